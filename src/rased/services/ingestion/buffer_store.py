"""The port between transaction buffering and its store: what a buffer store does, and the
values it hands back. `rased.adapters.redis.RedisEventBuffer` implements it."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class MoveStatus(enum.IntEnum):
    """What a move to flushing found (the first element of the scripts' replies)."""

    NOTHING = 0  # the buffer was empty: another process flushed it
    MOVED = 1  # moved into a new flushing segment (or already moved under this token)
    NOT_DUE = 2  # idle mode: a batch arrived since the deadline was set


@dataclass(frozen=True, slots=True)
class TransactionKey:
    """One transaction of one session of one organization."""

    organization_id: str
    session_id: str
    transaction_id: str

    @property
    def tag(self) -> str:
        """The hash tag of the transaction's keys, and its member in the indexes."""
        return f"{self.organization_id}/{self.session_id}/{self.transaction_id}"

    @classmethod
    def from_tag(cls, tag: str) -> TransactionKey:
        """Parse a tag written by `tag`."""
        organization_id, session_id, transaction_id = tag.split("/")
        return cls(organization_id, session_id, transaction_id)


@dataclass(frozen=True, slots=True)
class Segment:
    """A transaction's batches moved to flushing: everything needed to publish them."""

    transaction: TransactionKey
    segment: int
    reason: int
    triggered_at_ms: int
    moved_at_ms: int
    batch_count: int
    byte_count: int
    event_count: int
    first_event_ms: int
    last_event_ms: int
    token: str
    user_id: str
    payload: bytes  # the framed batches, concatenated in the order they were appended


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append did: stored (maybe moved to flushing) or recognized as a duplicate."""

    duplicate: bool
    batches: int = 0  # buffered after the append (before a move)
    bytes: int = 0
    moved: Segment | None = None  # set when the append carried a flush and moved the buffer


@dataclass(frozen=True, slots=True)
class MoveResult:
    """What a move found; `segment` is set when it moved the buffer."""

    status: MoveStatus
    segment: Segment | None = None
    last_segment: int = 0  # NOTHING: the transaction's latest segment
    last_reason: int = 0  # NOTHING: why that segment was flushed
    last_append_ms: int = 0  # NOT_DUE: when the latest batch arrived


class EventBufferStore(Protocol):
    """Per-transaction buffers with idempotent appends, atomic moves to flushing, an
    idle-deadline index and an index of flushes in progress (see the Redis adapter)."""

    @property
    def shards(self) -> int:
        """How many index shards there are (each swept independently)."""
        ...

    async def append(
        self,
        transaction: TransactionKey,
        batch_id: str,
        framed: bytes,
        size: int,
        event_count: int,
        first_event_ms: int | None,
        last_event_ms: int | None,
        user_id: str,
        now_ms: int,
        flush_reason: int | None = None,
    ) -> AppendResult:
        """Store a batch once per batch id; with a flush_reason, move the buffer too."""
        ...

    async def move_over_threshold(self, transaction: TransactionKey, now_ms: int) -> MoveResult:
        """Move the buffer if it still holds more than max_batches or at least max_bytes."""
        ...

    async def move_if_idle(
        self, transactions: Sequence[TransactionKey], now_ms: int
    ) -> list[MoveResult]:
        """Move the buffers that are still idle."""
        ...

    async def finish(self, segment: Segment) -> None:
        """Forget a published segment."""
        ...

    async def claim_due(
        self, shard: int, now_ms: int, lease_ms: int
    ) -> tuple[list[TransactionKey], int]:
        """Claim transactions past their idle deadline; return them and the lease score."""
        ...

    async def settle_deadlines(
        self, settled: Sequence[tuple[TransactionKey, int, int | None]]
    ) -> None:
        """Remove or re-score claimed deadlines that still carry the lease."""
        ...

    async def claim_stale_flushes(self, shard: int, now_ms: int, stale_ms: int) -> list[str]:
        """Claim flush index entries older than stale_ms."""
        ...

    async def stale_segments(self, member: str, moved_before_ms: int) -> list[Segment]:
        """The segments of the entry's transaction moved at or before a time."""
        ...

    async def drop_flush_entry(self, member: str) -> None:
        """Remove a flush index entry whose segments are published."""
        ...
