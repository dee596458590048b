"""Apply the versioned SQL migrations of PostgreSQL once each, even with processes racing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from rased.migrations.files import MigrationError, versioned_files

MIGRATIONS_DIR = Path(__file__).with_name("postgres")

# One advisory lock key for "the schema of this database is being migrated". Advisory locks
# are per database, so migrating two databases of one cluster does not serialise them.
LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"rased.schema_migrations").digest()[:8], "big", signed=True
)


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version, name, text and checksum."""

    version: str
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        """Return the SHA-256 of the text, line endings normalised (a CRLF checkout is equal)."""
        return hashlib.sha256(self.sql.replace("\r\n", "\n").encode()).hexdigest()


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read the `NNNN_name.sql` files of a folder, in version order."""
    return [
        Migration(f.version, f.name, f.path, f.path.read_text())
        for f in versioned_files(directory or MIGRATIONS_DIR, "sql")
    ]


async def apply_postgres_migrations(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations in order, each in its own transaction; return their versions.

    A session-level advisory lock makes concurrent runners take turns: the second one finds
    the first one's migrations recorded and applies nothing twice. An applied migration
    whose file has changed since is an error, naming the file.
    """
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            return await _apply(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    """Check the recorded migrations against the files, then apply the rest (lock held)."""
    await conn.execute(_CREATE_TABLE)
    recorded = {
        row["version"]: row["checksum"]
        for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
    }
    for migration in migrations:
        checksum = recorded.get(migration.version)
        if checksum is not None and checksum != migration.checksum:
            raise MigrationError(
                f"{migration.path}: migration {migration.version} was applied with checksum "
                f"{checksum} but the file now has {migration.checksum}; applied migrations "
                "must not change: restore the file and add a new migration instead"
            )
    applied: list[str] = []
    for migration in migrations:
        if migration.version in recorded:
            continue
        async with conn.transaction():
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{migration.path}: {type(exc).__name__}: {exc}") from exc
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        applied.append(migration.version)
    return applied
