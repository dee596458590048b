"""Apply the versioned CQL migrations of a Cassandra keyspace once each, in order.

The files live in `migrations/cassandra/` as `NNNN_name.cql` and name no keyspace: the
runner creates the keyspace when it is missing, with the replication it is given, and
applies the files inside it. Local and test stacks use
`{"class": "SimpleStrategy", "replication_factor": 1}`; production uses
`{"class": "NetworkTopologyStrategy", "<datacenter>": 3}` per datacenter, with the services
reading and writing at LOCAL_QUORUM. Changing an existing keyspace's replication is an
operation (ALTER KEYSPACE, then a full repair), not a migration: the runner leaves an
existing keyspace as it is.

Cassandra has no transactional DDL, and before 5.1 concurrent schema changes through
different coordinators can conflict. So migrations run from one process at a time (the
deploy step, `make up`, the test fixtures), every statement is written to be harmless when
run again (`CREATE TABLE IF NOT EXISTS`, `ALTER TABLE t ADD IF NOT EXISTS c`, both in 5.0),
and a file that failed half-way is simply applied again once fixed. The
record of an applied version is a lightweight transaction, so two runners that race never
record one version twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import SimpleStatement

# The asyncio bridge lives with the Cassandra adapters; re-exported for the runner's callers.
from rased.adapters.cassandra.session import cassandra_session, execute
from rased.migrations.files import MigrationError, versioned_files

__all__ = [
    "MIGRATIONS_DIR",
    "Migration",
    "MigrationError",
    "apply_cassandra_migrations",
    "cassandra_session",
    "execute",
    "load_migrations",
    "replication_literal",
    "split_statements",
]

MIGRATIONS_DIR = Path(__file__).with_name("cassandra")

# Unquoted CQL identifiers fold to lower case; requiring it keeps names and lookups equal.
_KEYSPACE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text,
    checksum   text,
    applied_at timestamp
)
"""


@dataclass(frozen=True)
class Migration:
    """One CQL file: its version, name, path and statements."""

    version: str
    name: str
    path: Path
    statements: tuple[str, ...]

    @property
    def checksum(self) -> str:
        """Return the SHA-256 of the statements, comments and layout left out.

        The comments of a migration document the schema, so correcting one later is not a
        change of the migration; changing what runs is.
        """
        canonical = "\n".join(" ".join(statement.split()) for statement in self.statements)
        return hashlib.sha256(canonical.encode()).hexdigest()


def split_statements(text: str) -> list[str]:
    """Split CQL into statements: comments stripped, each ended by a `;` at the end of a line.

    Quotes are respected ('string', "Identifier", $$body$$), so comment markers and
    semicolons inside them are kept; a `;` inside a line does not end a statement.
    """
    statements: list[str] = []
    current: list[str] = []
    i, length = 0, len(text)
    while i < length:
        char = text[i]
        pair = text[i : i + 2]
        if pair in ("--", "//"):
            end = text.find("\n", i)
            i = length if end == -1 else end  # the newline itself is kept
        elif pair == "/*":
            end = text.find("*/", i + 2)
            if end == -1:
                raise MigrationError("unterminated /* comment")
            current.append(" ")
            i = end + 2
        elif char in "'\"" or pair == "$$":
            i = _copy_quoted(text, i, current)
        elif char == ";" and _rest_of_line_is_blank(text, i + 1):
            statements.append("".join(current).strip())
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    statements.append("".join(current).strip())
    return [statement for statement in statements if statement]


def _copy_quoted(text: str, start: int, out: list[str]) -> int:
    """Copy a quoted string, identifier or $$ body from start; return the index after it."""
    quote = "$$" if text.startswith("$$", start) else text[start]
    i = start + len(quote)
    while True:
        end = text.find(quote, i)
        if end == -1:
            raise MigrationError(f"unterminated {quote} quote")
        i = end + len(quote)
        # A doubled quote ('' or "") is an escaped one, not the end.
        if quote != "$$" and text.startswith(quote, i):
            i += 1
            continue
        out.append(text[start:i])
        return i


def _rest_of_line_is_blank(text: str, start: int) -> bool:
    """Tell whether only blanks (or a comment) follow start up to the end of its line."""
    end = text.find("\n", start)
    rest = text[start:] if end == -1 else text[start:end]
    stripped = rest.strip()
    return stripped == "" or stripped.startswith(("--", "//"))


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read the `NNNN_name.cql` files of a folder, in version order."""
    migrations: list[Migration] = []
    for file in versioned_files(directory or MIGRATIONS_DIR, "cql"):
        try:
            statements = tuple(split_statements(file.path.read_text()))
        except MigrationError as exc:
            raise MigrationError(f"{file.path}: {exc}") from exc
        if not statements:
            raise MigrationError(f"{file.path}: no CQL statement in the file")
        migrations.append(Migration(file.version, file.name, file.path, statements))
    return migrations


def replication_literal(replication: Mapping[str, str | int]) -> str:
    """Render a replication map as a CQL map literal, every key and value a quoted string."""
    if "class" not in replication:
        raise MigrationError(
            "replication needs a 'class' (SimpleStrategy, NetworkTopologyStrategy)"
        )

    def quoted(value: str | int) -> str:
        return "'" + str(value).replace("'", "''") + "'"

    return (
        "{"
        + ", ".join(f"{quoted(key)}: {quoted(value)}" for key, value in replication.items())
        + "}"
    )


async def apply_cassandra_migrations(
    contact_points: Sequence[str],
    port: int,
    keyspace: str,
    replication: Mapping[str, str | int],
    directory: Path | None = None,
) -> list[str]:
    """Create the keyspace if missing, apply the pending migrations in order; return their versions.

    An applied migration whose statements have changed since is an error that names the
    file; nothing is applied then.
    """
    if not _KEYSPACE.match(keyspace):
        raise MigrationError(f"keyspace {keyspace!r}: use 1-48 lower-case letters, digits and _")
    migrations = load_migrations(directory)
    async with cassandra_session(contact_points, port) as session:
        await execute(
            session,
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} "
            f"WITH replication = {replication_literal(replication)}",
        )
        await asyncio.to_thread(session.set_keyspace, keyspace)
        await execute(session, _CREATE_TABLE)
        return await _apply(session, migrations)


async def _apply(session: Session, migrations: list[Migration]) -> list[str]:
    """Check the recorded migrations against the files, then apply and record the rest."""
    recorded = {
        row.version: row.checksum
        for row in await execute(
            session, _quorum("SELECT version, checksum FROM schema_migrations")
        )
    }
    for migration in migrations:
        _check_unchanged(migration, recorded.get(migration.version))
    applied: list[str] = []
    for migration in migrations:
        if migration.version in recorded:
            continue
        for number, statement in enumerate(migration.statements, start=1):
            try:
                await execute(session, statement)
            except Exception as exc:
                raise MigrationError(
                    f"{migration.path}: statement {number} failed: {type(exc).__name__}: {exc}"
                ) from exc
        rows = await execute(
            session,
            _quorum(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                "VALUES (%s, %s, %s, toTimestamp(now())) IF NOT EXISTS"
            ),
            (migration.version, migration.name, migration.checksum),
        )
        # Not applied: a concurrent runner recorded it first; it must have run the same file.
        if rows and not rows[0].applied:
            _check_unchanged(migration, rows[0].checksum)
        applied.append(migration.version)
    return applied


def _check_unchanged(migration: Migration, recorded_checksum: str | None) -> None:
    """Raise when the version was recorded with other statements than the file has now."""
    if recorded_checksum is not None and recorded_checksum != migration.checksum:
        raise MigrationError(
            f"{migration.path}: migration {migration.version} was applied with checksum "
            f"{recorded_checksum} but the file's statements now have {migration.checksum}; "
            "applied migrations must not change: restore the file and add a new migration"
        )


def _quorum(query: str) -> SimpleStatement:
    """A statement on the bookkeeping table, at quorum so every runner sees the same record."""
    return SimpleStatement(
        query,
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
    )
