"""Which driver errors mean "Cassandra is unavailable right now" (retry later)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cassandra import (
    CoordinationFailure,
    OperationTimedOut,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
)
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException

from rased.common.errors import DependencyUnavailable

# Down, unreachable, overloaded or timing out: the same request may succeed later.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    NoHostAvailable,
    OperationTimedOut,
    Unavailable,
    ReadTimeout,
    WriteTimeout,
    CoordinationFailure,
    ConnectionException,
    ConnectionError,
    TimeoutError,
)


@contextmanager
def cassandra_errors() -> Iterator[None]:
    """Turn the driver's availability errors into DependencyUnavailable (retryable)."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise DependencyUnavailable(f"Cassandra unavailable: {type(exc).__name__}") from exc
