"""The correlation id of the work in progress, carried in gRPC metadata and Kafka headers."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

# gRPC metadata keys must be lower case; Kafka headers use the same name.
CORRELATION_HEADER = "x-correlation-id"

_current: ContextVar[str | None] = ContextVar("rased_correlation_id", default=None)


def current_correlation_id() -> str | None:
    """Return the correlation id of the current task, if any."""
    return _current.get()


def set_correlation_id(value: str | None) -> None:
    """Set the correlation id of the current task (and the tasks it creates)."""
    _current.set(value)


def new_correlation_id() -> str:
    """Return a fresh correlation id."""
    return uuid.uuid4().hex


def accept_correlation_id(received: str | None) -> str:
    """Keep a well-formed received id, or make a new one; return the id now in effect."""
    value = received if received and len(received) <= 128 and received.isprintable() else None
    value = value or new_correlation_id()
    _current.set(value)
    return value
