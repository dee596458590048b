"""The narrow interfaces the persistence worker needs from its backing stores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from rased.common.crypto import Keyring
from rased.services.persistence.rows import TransactionRow


@dataclass(frozen=True)
class SealedEvent:
    """One event row ready to store: its key, its encrypted payload and the key id."""

    organization_id: str
    transaction_id: str
    event_time_ms: int
    sequence: int
    session_id: str
    event_type: str
    key_id: str
    payload: bytes


class EventStore(Protocol):
    """Long-term store of events (Cassandra); writes are idempotent upserts by row key."""

    async def write(
        self,
        events: Sequence[SealedEvent],
        transaction: TransactionRow,
        ttl_seconds: int,
        ingested_at: datetime,
    ) -> None:
        """Write the events and the transaction's listing rows, all with the TTL.

        Returns once every row is written; raises DependencyUnavailable when the store is
        down or timed out (some rows may be written: writing again is harmless).
        """
        ...


class DataKeys(Protocol):
    """Organizations' data keys: the newest seals, every one opens."""

    async def keyring(self, organization_id: str) -> Keyring:
        """Return the organization's data keyring, creating its first key when it has none."""
        ...


class RetentionPolicy(Protocol):
    """How long each organization's events are kept."""

    async def retention_days(self, organization_id: str) -> int:
        """Return the organization's retention in days."""
        ...
