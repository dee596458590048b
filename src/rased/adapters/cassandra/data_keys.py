"""Organizations' data keys in Cassandra, wrapped by the master keyring, cached in memory."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import SimpleStatement

from rased.adapters.cassandra.errors import cassandra_errors
from rased.adapters.cassandra.session import execute
from rased.common.crypto import Keyring, SealError, generate_key
from rased.common.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

_SELECT = (
    "SELECT generation, key_id, wrapped_key, master_key_id FROM data_keys "
    "WHERE organization_id = %s"
)
_INSERT = (
    "INSERT INTO data_keys (organization_id, generation, key_id, wrapped_key, master_key_id, "
    "created_at) VALUES (%s, %s, %s, %s, %s, %s) IF NOT EXISTS"
)
_REWRAP = (
    "UPDATE data_keys SET wrapped_key = %s, master_key_id = %s "
    "WHERE organization_id = %s AND generation = %s IF key_id = %s"
)


def _serial(query: str) -> SimpleStatement:
    """Key rows are read and written at quorum/serial: every worker must see the same keys."""
    return SimpleStatement(
        query,
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
    )


def key_id_of(generation: int) -> str:
    """Return the key id of a generation (unique within its organization)."""
    return f"dk{generation}"


def wrap_associated_data(organization_id: str, key_id: str) -> bytes:
    """Return the AAD binding a wrapped key to its organization and key id."""
    return b"rased.data_key.v1\x00" + organization_id.encode() + b"\x00" + key_id.encode()


@dataclass(frozen=True)
class _Cached:
    keyring: Keyring
    expires: float


class CassandraDataKeys:
    """Per-organization AES-256 data keys: created on first use, rotated, rewrapped.

    The keyring of an organization is cached for `cache_ttl_s`, so a rotation made by
    another process is picked up within that time (until then, rows are sealed with the
    previous key, which stays valid).
    """

    def __init__(
        self,
        session: Session,
        master: Keyring,
        cache_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._master = master
        self._cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def keyring(self, organization_id: str) -> Keyring:
        """Return the organization's keyring (newest key seals); create the first key if none."""
        cached = self._cache.get(organization_id)
        if cached is not None and cached.expires > self._clock():
            return cached.keyring
        # One load per organization at a time: a burst of its messages shares it.
        lock = self._locks.setdefault(organization_id, asyncio.Lock())
        async with lock:
            cached = self._cache.get(organization_id)
            if cached is not None and cached.expires > self._clock():
                return cached.keyring
            rows = await self._rows(organization_id)
            if not rows:
                await self._create(organization_id, 1)
                rows = await self._rows(organization_id)
            keyring = self._unwrap(organization_id, rows)
            self._cache[organization_id] = _Cached(keyring, self._clock() + self._cache_ttl_s)
            return keyring

    async def rotate(self, organization_id: str) -> str:
        """Add a new data key that seals from now on; return its key id."""
        rows = await self._rows(organization_id)
        generation = (max((row.generation for row in rows), default=0)) + 1
        await self._create(organization_id, generation)
        self._cache.pop(organization_id, None)
        return key_id_of(generation)

    async def rewrap(self, organization_id: str) -> int:
        """Re-seal the organization's data keys under the primary master key; return how many.

        Run after adding a master key, before removing the old one from the configuration:
        the data keys (and so every row) stay readable throughout.
        """
        changed = 0
        for row in await self._rows(organization_id):
            if row.master_key_id == self._master.primary_key_id:
                continue
            aad = wrap_associated_data(organization_id, row.key_id)
            key = self._master.open(row.wrapped_key, aad)
            with cassandra_errors():
                await execute(
                    self._session,
                    _serial(_REWRAP),
                    (
                        self._master.seal(key, aad),
                        self._master.primary_key_id,
                        organization_id,
                        row.generation,
                        row.key_id,
                    ),
                )
            changed += 1
        self._cache.pop(organization_id, None)
        return changed

    async def _rows(self, organization_id: str) -> list[Any]:
        with cassandra_errors():
            return await execute(self._session, _serial(_SELECT), (organization_id,))

    async def _create(self, organization_id: str, generation: int) -> None:
        """Insert a generation unless a racing worker did; the first insert wins for all."""
        key_id = key_id_of(generation)
        wrapped = self._master.seal(generate_key(), wrap_associated_data(organization_id, key_id))
        with cassandra_errors():
            rows = await execute(
                self._session,
                _serial(_INSERT),
                (
                    organization_id,
                    generation,
                    key_id,
                    wrapped,
                    self._master.primary_key_id,
                    datetime.now(UTC),
                ),
            )
        if rows and rows[0].applied:
            logger.info("created data key %s", key_id, extra={"organization_id": organization_id})

    def _unwrap(self, organization_id: str, rows: list[Any]) -> Keyring:
        keys: dict[str, bytes] = {}
        for row in rows:
            try:
                keys[row.key_id] = self._master.open(
                    row.wrapped_key, wrap_associated_data(organization_id, row.key_id)
                )
            except SealError as exc:
                # A master key missing from the configuration: no row of this organization
                # can be written safely (or read); stop rather than seal under a new key.
                raise DependencyUnavailable(
                    f"data key {row.key_id} cannot be unwrapped: {exc}"
                ) from exc
        newest = max(rows, key=lambda row: row.generation)
        return Keyring(keys, primary_key_id=newest.key_id)
