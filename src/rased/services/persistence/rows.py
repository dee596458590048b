"""From a compiled transaction to the rows it becomes: pure, deterministic row keys.

A redelivered Kafka message must overwrite the rows it wrote the first time, never add to
them. So every key part comes from the message itself: the organization, the transaction,
the event's own timestamp and a sequence computed from the segment number and the event's
position in the segment, never a clock or counter read by the consumer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from rased.v1 import events_pb2, pipeline_pb2

# Sequence = segment * SEGMENT_STRIDE + position of the event in the segment. A segment holds
# at most flush_max_batches (+1) batches of at most 500 events and fits in one Kafka
# message, far below 2**20 events; the events table's `sequence` is a 32-bit int, which
# leaves room for 2047 segments per transaction.
SEGMENT_STRIDE = 1 << 20
MAX_SEGMENT = (2**31 - 1) // SEGMENT_STRIDE - 1
# Cassandra refuses TTLs above 20 years.
MAX_TTL_SECONDS = 20 * 365 * 24 * 3600

_AAD_CONTEXT = b"rased.events.v1"


class UnstorableTransaction(ValueError):
    """A message that can never be stored as it is (retrying would not help)."""


@dataclass(frozen=True)
class EventRow:
    """One event as it goes into `events`, its payload not yet encrypted."""

    organization_id: str
    transaction_id: str
    event_time_ms: int
    sequence: int
    session_id: str
    event_type: str
    plaintext: bytes

    def associated_data(self) -> bytes:
        """Return the AAD that binds the encrypted payload to this row's key."""
        return payload_associated_data(
            self.organization_id, self.transaction_id, self.event_time_ms, self.sequence
        )


@dataclass(frozen=True)
class TransactionRow:
    """One transaction as it is listed in `transactions_by_day` and `transactions_by_session`."""

    organization_id: str
    transaction_id: str
    session_id: str
    days: tuple[date, ...]


@dataclass(frozen=True)
class TransactionRows:
    """Every row one compiled transaction (segment) becomes."""

    events: tuple[EventRow, ...]
    transaction: TransactionRow


def payload_associated_data(
    organization_id: str, transaction_id: str, event_time_ms: int, sequence: int
) -> bytes:
    """Return the AAD of an event payload: a payload moved to another row does not open.

    Length-prefixed, so no choice of ids can make two different rows share an AAD.
    """
    parts = [_AAD_CONTEXT, organization_id.encode(), transaction_id.encode()]
    encoded = b"".join(struct.pack(">I", len(part)) + part for part in parts)
    return encoded + struct.pack(">qi", event_time_ms, sequence)


def event_sequence(segment: int, position: int) -> int:
    """Return the deterministic sequence of the event at `position` of `segment`."""
    if not 0 <= segment <= MAX_SEGMENT:
        raise UnstorableTransaction(f"segment {segment} is beyond the {MAX_SEGMENT} supported")
    if not 0 <= position < SEGMENT_STRIDE:
        raise UnstorableTransaction(f"a segment of more than {SEGMENT_STRIDE} events")
    return segment * SEGMENT_STRIDE + position


def event_type(event: events_pb2.Event) -> str:
    """Return the kind of an event (pointer, keystroke, ...), or "unknown" when none is set."""
    return event.WhichOneof("kind") or "unknown"


def utc_day(event_time_ms: int) -> date:
    """Return the UTC day of a time in milliseconds since the epoch."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=event_time_ms)).date()


def transaction_rows(compiled: pipeline_pb2.CompiledTransaction) -> TransactionRows:
    """Return the rows of one compiled transaction, in the order ingestion compiled it."""
    if not compiled.organization_id or not compiled.transaction_id:
        raise UnstorableTransaction("a compiled transaction without organization or transaction")
    events: list[EventRow] = []
    position = 0
    for batch in compiled.batches:
        # The compiled transaction's session is the token's; a batch cannot name another
        # (ingestion checks the scope), but keep the row's own if it is set.
        session_id = batch.session_id or compiled.session_id
        for event in batch.events:
            events.append(
                EventRow(
                    organization_id=compiled.organization_id,
                    transaction_id=compiled.transaction_id,
                    event_time_ms=event.timestamp_ms,
                    sequence=event_sequence(compiled.segment, position),
                    session_id=session_id,
                    event_type=event_type(event),
                    plaintext=event.SerializeToString(deterministic=True),
                )
            )
            position += 1
    days = tuple(sorted({utc_day(row.event_time_ms) for row in events}))
    if not days:
        # A segment without events is still a transaction the organization had.
        days = (utc_day(_fallback_time_ms(compiled)),)
    return TransactionRows(
        events=tuple(events),
        transaction=TransactionRow(
            organization_id=compiled.organization_id,
            transaction_id=compiled.transaction_id,
            session_id=compiled.session_id,
            days=days,
        ),
    )


def _fallback_time_ms(compiled: pipeline_pb2.CompiledTransaction) -> int:
    if compiled.first_event_ms > 0:
        return compiled.first_event_ms
    return compiled.compiled_at.ToMilliseconds()


def ttl_seconds(retention_days: int) -> int:
    """Return the row TTL of a retention in days, within what Cassandra accepts."""
    if retention_days <= 0:
        raise ValueError("retention must be at least one day")
    return min(retention_days * 24 * 3600, MAX_TTL_SECONDS)
