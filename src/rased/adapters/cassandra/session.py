"""asyncio over the (thread-based) DataStax driver: connect, prepare and execute without blocking.

The driver runs its own I/O threads; `execute_async` returns a ResponseFuture whose callbacks
fire on one of them. `execute` hands the result over to the event loop thread-safely, so
coroutines can await a statement like any other I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from cassandra import ConsistencyLevel, ProtocolVersion
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    ResponseFuture,
    Session,
)
from cassandra.metadata import protect_name
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import Statement

# Schema changes wait for schema agreement between nodes; give them more than a query.
DEFAULT_REQUEST_TIMEOUT_S = 60.0


def in_keyspace(session: Session, query: str) -> str:
    """Return `query` with `{keyspace}` replaced by the session's keyspace (quoted if CQL needs).

    Prepared statements name their keyspace: Cassandra keeps them across restarts and
    re-prepares them at start-up without any session's USE, logging a warning (and dropping
    the statement) for every unqualified one.

    Raises:
        ValueError: the session was connected without a keyspace.
    """
    if not session.keyspace:
        raise ValueError("the Cassandra session has no keyspace to prepare statements in")
    return query.format(keyspace=protect_name(session.keyspace))


@asynccontextmanager
async def cassandra_session(
    contact_points: Sequence[str],
    port: int,
    keyspace: str | None = None,
    *,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    consistency: int = ConsistencyLevel.LOCAL_ONE,
    max_reconnect_delay_s: float = 600.0,
) -> AsyncIterator[Session]:
    """Connect a driver session without blocking the event loop; shut the cluster down after.

    `max_reconnect_delay_s` caps the driver's backoff when a node goes away, so a worker
    notices a node that is back within that delay.
    """
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        request_timeout=request_timeout_s,
        consistency_level=consistency,
    )
    cluster = Cluster(
        contact_points=list(contact_points),
        port=port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        # Cassandra 4.0+ speaks v5; naming it skips the driver's downgrade handshakes.
        protocol_version=ProtocolVersion.V5,
        reconnection_policy=ExponentialReconnectionPolicy(
            base_delay=min(1.0, max_reconnect_delay_s), max_delay=max_reconnect_delay_s
        ),
    )
    try:
        session = await asyncio.to_thread(cluster.connect, keyspace)
        yield session
    finally:
        await asyncio.to_thread(cluster.shutdown)


async def execute(
    session: Session, query: str | Statement, parameters: Sequence[Any] | None = None
) -> list[Any]:
    """Run one statement through execute_async and await every page of its rows."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    rows: list[Any] = []
    response: ResponseFuture = session.execute_async(query, parameters)

    # The driver calls these on its own I/O thread; results cross to the loop thread-safely.
    def on_page(page: list[Any]) -> None:
        rows.extend(page or ())
        if response.has_more_pages:
            response.start_fetching_next_page()  # the same callbacks run for the next page
        else:
            loop.call_soon_threadsafe(_settle, done, rows, None)

    def on_error(exc: BaseException) -> None:
        loop.call_soon_threadsafe(_settle, done, None, exc)

    response.add_callbacks(on_page, on_error)
    return await done


def _settle(
    done: asyncio.Future[list[Any]], rows: list[Any] | None, exc: BaseException | None
) -> None:
    """Resolve the awaiting future, unless its awaiter has given up (cancelled) already."""
    if done.done():
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(rows or [])
