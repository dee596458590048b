"""The local Cassandra node and the CQL migrations runner, each test in a keyspace of its own."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rased.adapters.cassandra.event_store import CassandraEventStore
from rased.adapters.cassandra.session import in_keyspace
from rased.devstack.base import ManagedServer
from rased.migrations.cassandra import (
    MigrationError,
    apply_cassandra_migrations,
    cassandra_session,
    execute,
    load_migrations,
)

# Includes starting the node when the session's first test needs it.
pytestmark = pytest.mark.timeout(180)

REPLICATION: dict[str, str | int] = {"class": "SimpleStrategy", "replication_factor": 1}
INSERT_EVENT = (
    "INSERT INTO events (organization_id, transaction_id, event_time_ms, sequence, session_id, "
    "event_type, key_id, payload, ingested_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "USING TTL 86400"
)
SELECT_EVENTS = (
    "SELECT organization_id, transaction_id, event_time_ms, sequence, session_id, event_type, "
    "key_id, payload, ingested_at, TTL(payload) AS ttl FROM events "
    "WHERE organization_id = %s AND transaction_id = %s"
)


@pytest.fixture
async def keyspace(cassandra_server: ManagedServer) -> AsyncIterator[str]:
    """Name of a keyspace no other test uses; dropped after the test if it was created."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    async with cassandra_session(*_endpoint(cassandra_server)) as session:
        await execute(session, f"DROP KEYSPACE IF EXISTS {name}")


def _endpoint(server: ManagedServer) -> tuple[list[str], int]:
    return [server.settings.host], server.settings.cassandra_port


async def _apply(server: ManagedServer, keyspace: str, directory: Path | None = None) -> list[str]:
    contact_points, port = _endpoint(server)
    return await apply_cassandra_migrations(contact_points, port, keyspace, REPLICATION, directory)


async def _key_columns(server: ManagedServer, keyspace: str, table: str) -> dict[str, list[str]]:
    """Partition key and clustering columns of a table, in key order, from system_schema."""
    async with cassandra_session(*_endpoint(server)) as session:
        rows = await execute(
            session,
            "SELECT column_name, kind, position FROM system_schema.columns "
            "WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, table),
        )
    key: dict[str, list[str]] = {"partition_key": [], "clustering": []}
    for row in sorted(rows, key=lambda row: row.position):
        if row.kind in key:
            key[row.kind].append(row.column_name)
    return key


async def test_migrations_create_the_tables_once(
    cassandra_server: ManagedServer, keyspace: str
) -> None:
    """The first run creates the keyspace and tables, recording each version; a second, nothing."""
    migrations = load_migrations()
    versions = [migration.version for migration in migrations]
    assert versions and versions[0] == "0001"

    assert await _apply(cassandra_server, keyspace) == versions

    async with cassandra_session(*_endpoint(cassandra_server), keyspace=keyspace) as session:
        tables = {
            row.table_name
            for row in await execute(
                session,
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
                (keyspace,),
            )
        }
        recorded = {
            row.version: (row.name, row.checksum)
            for row in await execute(
                session, "SELECT version, name, checksum FROM schema_migrations"
            )
        }
    assert {
        "events",
        "transactions_by_day",
        "transactions_by_session",
        "schema_migrations",
    } <= tables
    assert recorded == {m.version: (m.name, m.checksum) for m in migrations}
    # A transaction per partition, never a whole tenant; events in time order within it.
    assert await _key_columns(cassandra_server, keyspace, "events") == {
        "partition_key": ["organization_id", "transaction_id"],
        "clustering": ["event_time_ms", "sequence"],
    }
    by_day = await _key_columns(cassandra_server, keyspace, "transactions_by_day")
    assert by_day["partition_key"] == ["organization_id", "day"]

    assert await _apply(cassandra_server, keyspace) == []


async def test_events_round_trip(cassandra_server: ManagedServer, keyspace: str) -> None:
    """Events read back as written, in time order, once each after a re-write, for one tenant."""
    await _apply(cassandra_server, keyspace)
    ingested_at = datetime.now(UTC).replace(microsecond=0)
    # The columns of INSERT_EVENT, less ingested_at.
    later = ("org-1", "txn-1", 1_700_000_000_500, 1, "s-1", "keystroke", "k-7", os.urandom(48))
    earlier = ("org-1", "txn-1", 1_700_000_000_100, 0, "s-1", "pointer", "k-7", os.urandom(48))

    async with cassandra_session(*_endpoint(cassandra_server), keyspace=keyspace) as session:
        for event in (later, earlier, later):  # the redelivered event lands on the same row
            await execute(session, INSERT_EVENT, (*event, ingested_at))
        rows = await execute(session, SELECT_EVENTS, ("org-1", "txn-1"))
        other_tenant = await execute(session, SELECT_EVENTS, ("org-2", "txn-1"))

    # The driver returns timestamps as naive datetimes in UTC.
    assert [(*row[:8], row.ingested_at.replace(tzinfo=UTC)) for row in rows] == [
        (*earlier, ingested_at),
        (*later, ingested_at),
    ]
    assert all(0 < row.ttl <= 86400 for row in rows)
    assert other_tenant == []


async def test_a_changed_applied_migration_is_refused(
    cassandra_server: ManagedServer, keyspace: str, tmp_path: Path
) -> None:
    """Changing an applied statement fails, naming the file; a changed comment does not."""
    for migration in load_migrations():
        shutil.copy(migration.path, tmp_path)
    await _apply(cassandra_server, keyspace, tmp_path)
    edited = tmp_path / "0001_events.cql"
    original = edited.read_text()

    edited.write_text(
        "-- A comment added after the fact documents; it changes nothing.\n" + original
    )
    assert await _apply(cassandra_server, keyspace, tmp_path) == []

    edited.write_text(
        original.replace("event_type      text,", "event_type      text,\n    extra int,")
    )
    with pytest.raises(MigrationError, match=r"0001_events\.cql.*must not change"):
        await _apply(cassandra_server, keyspace, tmp_path)
    columns = await _columns(cassandra_server, keyspace, "events")
    assert "extra" not in columns


async def test_pending_migrations_apply_in_order_and_a_failure_names_its_file(
    cassandra_server: ManagedServer, keyspace: str, tmp_path: Path
) -> None:
    """Only new versions run, in order; a failing one is reported and not recorded."""
    (tmp_path / "0001_first.cql").write_text(
        "CREATE TABLE IF NOT EXISTS first (id int PRIMARY KEY);\n"
    )
    assert await _apply(cassandra_server, keyspace, tmp_path) == ["0001"]

    (tmp_path / "0003_third.cql").write_text("ALTER TABLE second ADD note text;\n")
    (tmp_path / "0002_second.cql").write_text(
        "CREATE TABLE IF NOT EXISTS second (id int PRIMARY KEY); -- a comment may follow the ;\n"
    )
    # 0003 needs the table of 0002: it only works when applied after it.
    assert await _apply(cassandra_server, keyspace, tmp_path) == ["0002", "0003"]
    assert "note" in await _columns(cassandra_server, keyspace, "second")

    (tmp_path / "0004_broken.cql").write_text("ALTER TABLE missing ADD note text;\n")
    with pytest.raises(MigrationError, match=r"0004_broken\.cql: statement 1 failed"):
        await _apply(cassandra_server, keyspace, tmp_path)
    async with cassandra_session(*_endpoint(cassandra_server), keyspace=keyspace) as session:
        versions = sorted(
            row.version for row in await execute(session, "SELECT version FROM schema_migrations")
        )
    assert versions == ["0001", "0002", "0003"]


async def _columns(server: ManagedServer, keyspace: str, table: str) -> set[str]:
    async with cassandra_session(*_endpoint(server)) as session:
        rows = await execute(
            session,
            "SELECT column_name FROM system_schema.columns "
            "WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, table),
        )
    return {row.column_name for row in rows}


async def test_prepared_statements_name_their_keyspace(
    cassandra_server: ManagedServer, keyspace: str
) -> None:
    """The server re-prepares kept statements at start-up without a USE: they must be qualified."""
    await _apply(cassandra_server, keyspace)
    async with cassandra_session(*_endpoint(cassandra_server), keyspace=keyspace) as session:
        await CassandraEventStore.prepare(session)
        kept = await execute(session, "SELECT query_string FROM system.prepared_statements")
        qualified = in_keyspace(session, "SELECT * FROM {keyspace}.events")
        assert qualified.split()[-1] == keyspace + ".events"
    ours = {row.query_string for row in kept if keyspace in row.query_string}
    assert len(ours) == 3, ours
    assert {q.split(" (")[0] for q in ours} == {
        f"INSERT INTO {keyspace}.{table}"
        for table in ("events", "transactions_by_day", "transactions_by_session")
    }
    async with cassandra_session(*_endpoint(cassandra_server)) as no_keyspace:
        with pytest.raises(ValueError, match="no keyspace"):
            in_keyspace(no_keyspace, "SELECT * FROM {keyspace}.events")
