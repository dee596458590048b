"""The local PostgreSQL server and the migrations runner, each test on a database of its own."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from rased.devstack.base import ManagedServer
from rased.devstack.postgres import PostgresServer
from rased.migrations.files import MigrationError
from rased.migrations.postgres import apply_postgres_migrations, load_migrations


@pytest.fixture
async def server(postgres_server: ManagedServer) -> PostgresServer:
    """The session's server, with the application's role and database in place."""
    assert isinstance(postgres_server, PostgresServer)
    await postgres_server.bootstrap()
    return postgres_server


@pytest.fixture
async def database(server: PostgresServer) -> AsyncIterator[str]:
    """DSN of a fresh database owned by the application's role, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(server.admin_dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{server.settings.postgres_user}"')
        yield server.dsn(name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _recorded(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    return [row["version"] for row in rows]


async def test_bootstrap_creates_the_application_role_and_database(server: PostgresServer) -> None:
    """The services' DSN connects as their own, non-superuser role; bootstrap is repeatable."""
    await server.bootstrap()
    conn = await asyncpg.connect(server.dsn())
    try:
        user, db, superuser = await conn.fetchrow(
            "SELECT current_user, current_database(), rolsuper FROM pg_roles "
            "WHERE rolname = current_user"
        )
    finally:
        await conn.close()
    assert (user, db, superuser) == (
        server.settings.postgres_user,
        server.settings.postgres_db,
        False,
    )


async def test_migrations_apply_once(database: str) -> None:
    """The first run applies every migration in order; the second applies nothing."""
    versions = [migration.version for migration in load_migrations()]
    assert versions and versions[0] == "0001"

    assert await apply_postgres_migrations(database) == versions
    assert await apply_postgres_migrations(database) == []
    assert await _recorded(database) == versions


async def test_concurrent_runs_apply_each_migration_once(database: str, tmp_path: Path) -> None:
    """Two runners racing on one database apply each version exactly once between them."""
    (tmp_path / "0001_counter.sql").write_text("CREATE TABLE counter (n int NOT NULL);")
    # Slow enough that, without the lock, the second runner would start it too.
    (tmp_path / "0002_count.sql").write_text(
        "SELECT pg_sleep(0.5); INSERT INTO counter VALUES (1);"
    )

    first, second = await asyncio.gather(
        apply_postgres_migrations(database, tmp_path),
        apply_postgres_migrations(database, tmp_path),
    )

    assert sorted(first + second) == ["0001", "0002"]
    assert [] in (first, second)
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM counter") == 1
    finally:
        await conn.close()


async def test_a_changed_applied_migration_is_refused(database: str, tmp_path: Path) -> None:
    """Editing an applied migration makes the next run fail, naming the file."""
    for migration in load_migrations():
        shutil.copy(migration.path, tmp_path)
    await apply_postgres_migrations(database, tmp_path)
    edited = tmp_path / "0001_organizations.sql"
    edited.write_text(edited.read_text() + "\nALTER TABLE organizations ADD COLUMN x int;\n")

    with pytest.raises(MigrationError, match=r"0001_organizations\.sql"):
        await apply_postgres_migrations(database, tmp_path)


async def test_a_failing_migration_leaves_nothing_behind(database: str, tmp_path: Path) -> None:
    """A migration that fails is rolled back whole and not recorded; the ones before it stay."""
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (n int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (n int); SELECT 1/0;")

    with pytest.raises(MigrationError, match=r"0002_bad\.sql"):
        await apply_postgres_migrations(database, tmp_path)

    assert await _recorded(database) == ["0001"]
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT to_regclass('half')") is None
    finally:
        await conn.close()


async def test_an_organization_is_stored_and_read_back(database: str) -> None:
    """A row written to organizations reads back with its defaults; bad retention is refused."""
    await apply_postgres_migrations(database)
    org_id = uuid.uuid4()
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("INSERT INTO organizations (id, name) VALUES ($1, $2)", org_id, "Bank A")
        row = await conn.fetchrow(
            "SELECT name, retention_days, created_at FROM organizations WHERE id = $1", org_id
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO organizations (id, name, retention_days) VALUES ($1, 'B', 0)",
                uuid.uuid4(),
            )
    finally:
        await conn.close()
    assert row["name"] == "Bank A"
    assert row["retention_days"] == 90
    assert row["created_at"] is not None
