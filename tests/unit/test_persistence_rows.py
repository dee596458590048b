"""The persistence worker's pure logic: row keys, AAD, TTL, backoff, sealing per organization."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import pytest

from rased.common.backoff import Backoff
from rased.common.crypto import Keyring, SealError, generate_key
from rased.services.persistence.persisting import TransactionPersister
from rased.services.persistence.ports import SealedEvent
from rased.services.persistence.rows import (
    MAX_SEGMENT,
    MAX_TTL_SECONDS,
    SEGMENT_STRIDE,
    TransactionRow,
    UnstorableTransaction,
    event_sequence,
    payload_associated_data,
    transaction_rows,
    ttl_seconds,
    utc_day,
)
from rased.v1 import events_pb2, pipeline_pb2

MIDNIGHT_MS = 1_764_028_800_000  # 2025-11-25T00:00:00Z


def _compiled(segment: int = 0) -> pipeline_pb2.CompiledTransaction:
    compiled = pipeline_pb2.CompiledTransaction(
        organization_id="org-1", session_id="sess-1", transaction_id="txn-1", segment=segment
    )
    first = compiled.batches.add(batch_id="b1", session_id="sess-1")
    first.events.add(timestamp_ms=MIDNIGHT_MS - 1, pointer=events_pb2.PointerEvent(x=1.0))
    first.events.add(timestamp_ms=MIDNIGHT_MS - 1, pointer=events_pb2.PointerEvent(x=2.0))
    second = compiled.batches.add(batch_id="b2", session_id="sess-1")
    second.events.add(timestamp_ms=MIDNIGHT_MS + 5, focus=events_pb2.FocusEvent())
    return compiled


def test_rows_keep_compiled_order_and_have_deterministic_keys() -> None:
    rows = transaction_rows(_compiled(segment=2))
    assert [r.sequence for r in rows.events] == [2 * SEGMENT_STRIDE + i for i in range(3)]
    assert [r.event_type for r in rows.events] == ["pointer", "pointer", "focus"]
    assert rows == transaction_rows(_compiled(segment=2))  # a redelivery: the same rows
    # A transaction spanning midnight (UTC) is listed on both days.
    assert rows.transaction.days == (date(2025, 11, 24), date(2025, 11, 25))
    assert events_pb2.Event.FromString(rows.events[2].plaintext).HasField("focus")


def test_segments_never_share_a_sequence() -> None:
    last_of_first = event_sequence(0, SEGMENT_STRIDE - 1)
    assert last_of_first < event_sequence(1, 0)
    assert event_sequence(MAX_SEGMENT, SEGMENT_STRIDE - 1) <= 2**31 - 1
    with pytest.raises(UnstorableTransaction):
        event_sequence(MAX_SEGMENT + 1, 0)
    with pytest.raises(UnstorableTransaction):
        event_sequence(0, SEGMENT_STRIDE)


def test_a_message_without_ids_is_unstorable() -> None:
    with pytest.raises(UnstorableTransaction):
        transaction_rows(pipeline_pb2.CompiledTransaction(organization_id="org-1"))


def test_associated_data_tells_every_row_part_apart() -> None:
    base = payload_associated_data("org", "txn", 5, 1)
    assert (
        len(
            {
                base,
                payload_associated_data("or", "gtxn", 5, 1),  # no ambiguity at the boundary
                payload_associated_data("org", "txn", 6, 1),
                payload_associated_data("org", "txn", 5, 2),
                payload_associated_data("org2", "txn", 5, 1),
            }
        )
        == 5
    )


def test_ttl_follows_retention_within_cassandras_limit() -> None:
    assert ttl_seconds(7) == 7 * 86400
    assert ttl_seconds(100_000) == MAX_TTL_SECONDS
    with pytest.raises(ValueError, match="at least one day"):
        ttl_seconds(0)


def test_utc_day() -> None:
    assert utc_day(MIDNIGHT_MS) == date(2025, 11, 25)
    assert utc_day(MIDNIGHT_MS - 1) == date(2025, 11, 24)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    low = Backoff(0.1, 2.0, random=lambda: 0.0)
    high = Backoff(0.1, 2.0, random=lambda: 1.0)
    assert [low.delay(n) for n in range(3)] == pytest.approx([0.05, 0.1, 0.2])
    assert [high.delay(n) for n in range(3)] == pytest.approx([0.1, 0.2, 0.4])
    assert high.delay(10_000) == pytest.approx(2.0)


class _Store:
    def __init__(self) -> None:
        self.written: list[tuple[list[SealedEvent], TransactionRow, int]] = []

    async def write(
        self,
        events: Sequence[SealedEvent],
        transaction: TransactionRow,
        ttl_seconds: int,
        ingested_at: datetime,
    ) -> None:
        self.written.append((list(events), transaction, ttl_seconds))


class _Keys:
    def __init__(self) -> None:
        self.rings = {"org-1": Keyring({"dk1": generate_key()}, "dk1")}

    async def keyring(self, organization_id: str) -> Keyring:
        return self.rings[organization_id]


class _Retention:
    async def retention_days(self, organization_id: str) -> int:
        return 30


async def test_persister_seals_each_payload_to_its_row_under_the_org_key() -> None:
    store, keys = _Store(), _Keys()
    persister = TransactionPersister(
        store, keys, _Retention(), clock=lambda: datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert await persister.persist(_compiled()) == 3
    [(events, transaction, ttl)] = store.written
    assert ttl == 30 * 86400 and transaction.transaction_id == "txn-1"
    ring = keys.rings["org-1"]
    plain = [r.plaintext for r in transaction_rows(_compiled()).events]
    for event, expected in zip(events, plain, strict=True):
        assert event.key_id == "dk1" and expected not in event.payload
        aad = payload_associated_data("org-1", "txn-1", event.event_time_ms, event.sequence)
        assert ring.open(event.payload, aad) == expected
    other = payload_associated_data("org-2", "txn-1", events[0].event_time_ms, 0)
    with pytest.raises(SealError):
        ring.open(events[0].payload, other)
