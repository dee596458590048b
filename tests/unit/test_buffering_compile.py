"""Compiling a segment without parsing its batches, and the size triggers (pure logic)."""

from __future__ import annotations

import pytest

from rased.services.ingestion.buffer_store import Segment, TransactionKey
from rased.services.ingestion.buffering import (
    compile_segment,
    frame_batch,
    threshold_reason,
    varint,
)
from rased.services.ingestion.ports import BufferPolicy
from rased.v1 import events_pb2, ingest_pb2, pipeline_pb2

TRANSACTION = TransactionKey("5f0c6c1e-3a57-4d53-9a55-0d5f3b1c2a10", "sess:1", "txn.9")


def _batch(number: int, page_url_length: int = 0) -> events_pb2.EventBatch:
    batch = events_pb2.EventBatch(
        batch_id=f"batch-{number:04d}",
        session_id=TRANSACTION.session_id,
        transaction_id=TRANSACTION.transaction_id,
        sequence=number,
        client_sent_at_ms=1_700_000_000_000 + number,
    )
    if page_url_length:
        batch.page_url = "https://example.com/" + "p" * page_url_length
    batch.events.add(
        timestamp_ms=1_700_000_000_000 + number,
        keystroke=events_pb2.KeystrokeEvent(action=events_pb2.KEY_ACTION_DOWN, key_id=number),
    )
    return batch


def _segment(batches: list[events_pb2.EventBatch], **overrides: object) -> Segment:
    payload = b"".join(frame_batch(b.SerializeToString()) for b in batches)
    fields: dict[str, object] = {
        "transaction": TRANSACTION,
        "segment": 2,
        "reason": ingest_pb2.FLUSH_REASON_SIZE,
        "triggered_at_ms": 1_700_000_123_456,
        "moved_at_ms": 1_700_000_123_457,
        "batch_count": len(batches),
        "byte_count": sum(b.ByteSize() for b in batches),
        "event_count": sum(len(b.events) for b in batches),
        "first_event_ms": 1_700_000_000_000,
        "last_event_ms": 1_700_000_000_009,
        "token": "0123456789abcdef",
        "user_id": "user@7",
        "payload": payload,
    }
    fields.update(overrides)
    return Segment(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152, 2**32, 2**63 - 1]
)
def test_varint_matches_protobuf(value: int) -> None:
    """Our varint is protobuf's, on both sides of every 7-bit boundary."""
    # byte_count is field 9, a uint64: its tag byte, then protobuf's own varint.
    encoded = pipeline_pb2.CompiledTransaction(byte_count=value).SerializeToString()
    assert varint(value) == (encoded[1:] if value else b"\x00")


@pytest.mark.parametrize("page_url_length", [0, 100, 16_400, 2_100_000])
def test_a_framed_batch_parses_as_one_entry_of_batches(page_url_length: int) -> None:
    """A framed batch is a valid `batches` entry, whatever its length prefix's size."""
    batch = _batch(1, page_url_length)
    parsed = pipeline_pb2.CompiledTransaction.FromString(frame_batch(batch.SerializeToString()))
    assert list(parsed.batches) == [batch]


def test_a_compiled_segment_is_the_message_protobuf_would_build() -> None:
    """Header fields plus the stored frames parse into exactly the full message."""
    batches = [_batch(n) for n in range(10)]
    segment = _segment(batches)

    compiled = pipeline_pb2.CompiledTransaction.FromString(compile_segment(segment))

    expected = pipeline_pb2.CompiledTransaction(
        organization_id=TRANSACTION.organization_id,
        session_id="sess:1",
        transaction_id="txn.9",
        segment=2,
        flush_reason=ingest_pb2.FLUSH_REASON_SIZE,
        batches=batches,
        batch_count=10,
        event_count=10,
        byte_count=sum(b.ByteSize() for b in batches),
        first_event_ms=1_700_000_000_000,
        last_event_ms=1_700_000_000_009,
        user_id="user@7",
        triggered_at_ms=1_700_000_123_456,
    )
    expected.compiled_at.FromMilliseconds(1_700_000_123_457)
    assert compiled == expected


def test_compiling_twice_gives_the_same_bytes() -> None:
    """A re-publication after a crash carries byte-identical content."""
    segment = _segment([_batch(n) for n in range(3)])
    assert compile_segment(segment) == compile_segment(_segment([_batch(n) for n in range(3)]))


@pytest.mark.parametrize(
    ("batches", "byte_count", "expected"),
    [
        (300, 100, None),
        (301, 100, ingest_pb2.FLUSH_REASON_BATCH_COUNT),
        (10, 3 * 1024 * 1024 - 1, None),
        (10, 3 * 1024 * 1024, ingest_pb2.FLUSH_REASON_SIZE),
        (301, 3 * 1024 * 1024, ingest_pb2.FLUSH_REASON_BATCH_COUNT),  # count wins a tie
    ],
)
def test_threshold_reason(batches: int, byte_count: int, expected: int | None) -> None:
    """More than max_batches, or at least max_bytes, fires; the default policy's bounds."""
    assert threshold_reason(batches, byte_count, BufferPolicy()) == expected
