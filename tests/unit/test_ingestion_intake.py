"""The intake's rules, with in-memory stand-ins for its ports (no servers involved)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.protobuf import json_format

from rased.common.errors import (
    DecryptionFailed,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    Unauthenticated,
    ValidationFailed,
)
from rased.services.ingestion.intake import BatchIntake, IntakeLimits
from rased.services.ingestion.ports import BufferOutcome, Caller, CredentialKind
from rased.services.results.ports import PendingStatus
from rased.v1 import events_pb2, ingest_pb2, pipeline_pb2

SESSION = Caller("org-1", CredentialKind.SESSION_TOKEN, session_id="sess-1", user_id="u-1")
PUBLISHABLE = Caller("org-1", CredentialKind.PUBLISHABLE_KEY, key_id="k-1")


class _Auth:
    async def authenticate_ingest(self, authorization: str | None, origin: str | None) -> Caller:
        if authorization == "Bearer good":
            return SESSION
        raise Unauthenticated("invalid or expired credential")

    async def authenticate_secret(self, authorization: str | None) -> Caller:
        raise Unauthenticated("invalid or expired credential")


class _Decryptor:
    def __init__(self) -> None:
        self.plaintext = b""

    async def decrypt(self, organization_id: str, compact_jwe: str) -> bytes:
        if compact_jwe.startswith("bad"):
            raise DecryptionFailed("authentication tag mismatch")
        return self.plaintext


class _Buffer:
    def __init__(self) -> None:
        self.accepted: list[tuple[str, str | None, events_pb2.EventBatch]] = []

    async def accept(
        self, organization_id: str, user_id: str | None, batch: events_pb2.EventBatch
    ) -> BufferOutcome:
        self.accepted.append((organization_id, user_id, batch))
        return BufferOutcome(
            ingest_pb2.BATCH_DISPOSITION_BUFFERED,
            buffered_batches=len(self.accepted),
            buffered_bytes=batch.ByteSize(),
        )


class _Rejections:
    def __init__(self) -> None:
        self.published: list[pipeline_pb2.RejectedBatch] = []

    async def publish_rejected(self, rejected: pipeline_pb2.RejectedBatch) -> None:
        self.published.append(rejected)


class _Limits:
    def __init__(self, allowed: int = 1000) -> None:
        self.allowed = allowed
        self.hits: list[tuple[str, str]] = []

    async def hit(self, organization_id: str, session_id: str) -> None:
        self.hits.append((organization_id, session_id))
        if len(self.hits) > self.allowed:
            raise QuotaExceeded("rate limit reached", timedelta(seconds=2))


class _Statuses:
    def __init__(self) -> None:
        self.marks: list[tuple[str, str, PendingStatus]] = []

    async def mark(self, organization_id: str, transaction_id: str, status: PendingStatus) -> None:
        self.marks.append((organization_id, transaction_id, status))


class _Parts:
    def __init__(self, allowed: int = 1000, **limits: int) -> None:
        self.statuses = _Statuses()
        self.decryptor = _Decryptor()
        self.buffer = _Buffer()
        self.rejections = _Rejections()
        self.limits = _Limits(allowed)
        sizes = {
            "max_batch_bytes": 64 * 1024,
            "max_events_per_batch": 100,
            "max_event_bytes": 4096,
            "kafka_max_message_bytes": 4 * 1024 * 1024,
        }
        sizes.update(limits)
        self.intake = BatchIntake(
            _Auth(),
            self.decryptor,
            self.buffer,
            self.rejections,
            self.limits,
            IntakeLimits(**sizes),
            statuses=self.statuses,
        )


def _batch(events: int = 3, session: str = "sess-1") -> events_pb2.EventBatch:
    batch = events_pb2.EventBatch(
        batch_id="batch-0001",
        session_id=session,
        transaction_id="txn-1",
        client_sent_at_ms=1_764_000_000_000,
    )
    for i in range(events):
        batch.events.add(
            timestamp_ms=1_764_000_000_000 + i,
            pointer=events_pb2.PointerEvent(action=events_pb2.POINTER_ACTION_MOVE, x=i, y=i),
        )
    return batch


async def test_a_good_batch_is_buffered_with_the_callers_org_and_user() -> None:
    parts = _Parts()
    reply = await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=_batch()))
    assert reply.disposition == ingest_pb2.BATCH_DISPOSITION_BUFFERED
    assert reply.batch_id == "batch-0001"
    org, user, batch = parts.buffer.accepted[0]
    assert (org, user, len(batch.events)) == ("org-1", "u-1", 3)
    assert parts.rejections.published == []
    assert parts.limits.hits == [("org-1", "sess-1")]


async def test_bad_events_are_dropped_and_recorded_one_by_one() -> None:
    parts = _Parts()
    batch = _batch(4)
    batch.events[1].pointer.x = float("inf")
    batch.events[3].ClearField("pointer")  # no kind at all
    reply = await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=batch))
    assert [r.index for r in reply.rejected_events] == [1, 3]
    assert reply.rejected_events[0].field_paths == ["events[1].pointer.x"]
    kept = parts.buffer.accepted[0][2]
    assert [e.timestamp_ms for e in kept.events] == [
        batch.events[0].timestamp_ms,
        batch.events[2].timestamp_ms,
    ]
    published = parts.rejections.published
    assert [r.event_index for r in published] == [1, 3]
    assert all(r.stage == pipeline_pb2.REJECTION_STAGE_VALIDATION for r in published)
    assert events_pb2.Event.FromString(published[0].raw) == batch.events[1]
    assert published[0].transaction_id == "txn-1"


async def test_a_bad_envelope_refuses_the_whole_batch_and_records_it() -> None:
    parts = _Parts()
    batch = _batch()
    batch.batch_id = "x"  # too short
    with pytest.raises(ValidationFailed) as caught:
        await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=batch))
    assert [v.field for v in caught.value.violations] == ["batch_id"]
    assert parts.buffer.accepted == []
    (rejected,) = parts.rejections.published
    assert rejected.event_index == -1
    assert events_pb2.EventBatch.FromString(rejected.raw) == batch


async def test_a_batch_whose_every_event_is_bad_is_refused() -> None:
    parts = _Parts()
    batch = _batch(2)
    for event in batch.events:
        event.pointer.y = float("nan")
    with pytest.raises(ValidationFailed):
        await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=batch))
    assert parts.buffer.accepted == []
    assert len(parts.rejections.published) == 1


async def test_oversized_batches_and_events_are_refused_and_recorded() -> None:
    parts = _Parts(max_batch_bytes=2000, max_event_bytes=200)
    big = _batch(100)
    with pytest.raises(PayloadTooLarge) as caught:
        await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=big))
    assert caught.value.limit_bytes == 2000
    assert parts.rejections.published[-1].stage == pipeline_pb2.REJECTION_STAGE_SIZE_LIMIT

    batch = _batch(2)
    batch.events.add(
        timestamp_ms=1_764_000_000_009,
        device=events_pb2.DeviceInfo(user_agent="x" * 500),
    )
    reply = await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=batch))
    assert [r.index for r in reply.rejected_events] == [2]
    assert "exceeds 200" in reply.rejected_events[0].reason


async def test_too_many_events_is_payload_too_large() -> None:
    parts = _Parts(max_events_per_batch=5)
    with pytest.raises(PayloadTooLarge):
        await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=_batch(6)))
    assert parts.rejections.published[-1].stage == pipeline_pb2.REJECTION_STAGE_SIZE_LIMIT


async def test_a_batch_for_another_session_than_the_token_is_refused() -> None:
    parts = _Parts()
    with pytest.raises(PermissionDenied):
        await parts.intake.submit(
            SESSION, ingest_pb2.SubmitBatchRequest(batch=_batch(session="sess-2"))
        )
    assert parts.rejections.published[-1].stage == pipeline_pb2.REJECTION_STAGE_SCOPE
    # A publishable key is not bound to a session.
    reply = await parts.intake.submit(
        PUBLISHABLE, ingest_pb2.SubmitBatchRequest(batch=_batch(session="sess-2"))
    )
    assert reply.disposition == ingest_pb2.BATCH_DISPOSITION_BUFFERED


async def test_encrypted_batches_are_opened_or_refused() -> None:
    parts = _Parts()
    parts.decryptor.plaintext = json_format.MessageToJson(_batch()).encode()
    reply = await parts.intake.submit(
        SESSION, ingest_pb2.SubmitBatchRequest(encrypted_batch="eyJ" + "a" * 40)
    )
    assert reply.disposition == ingest_pb2.BATCH_DISPOSITION_BUFFERED
    assert len(parts.buffer.accepted[0][2].events) == 3

    with pytest.raises(DecryptionFailed):
        await parts.intake.submit(
            SESSION, ingest_pb2.SubmitBatchRequest(encrypted_batch="bad" + "a" * 40)
        )
    assert parts.rejections.published[-1].stage == pipeline_pb2.REJECTION_STAGE_DECRYPT

    parts.decryptor.plaintext = b'{"batchId": 12, "unknownField": true}'
    with pytest.raises(ValidationFailed):
        await parts.intake.submit(
            SESSION, ingest_pb2.SubmitBatchRequest(encrypted_batch="eyJ" + "a" * 40)
        )
    assert parts.rejections.published[-1].stage == pipeline_pb2.REJECTION_STAGE_DECODE


async def test_rate_limit_refuses_before_any_work() -> None:
    parts = _Parts(allowed=1)
    await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=_batch()))
    with pytest.raises(QuotaExceeded):
        await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=_batch()))
    assert len(parts.buffer.accepted) == 1
    assert parts.rejections.published == []


async def test_unknown_credentials_are_unauthenticated() -> None:
    parts = _Parts()
    with pytest.raises(Unauthenticated):
        await parts.intake.authenticate("Bearer nope", None)
    assert await parts.intake.authenticate("Bearer good", None) == SESSION


async def test_a_transaction_is_marked_buffered_once_then_scoring_at_the_flush() -> None:
    parts = _Parts()
    for _ in range(3):
        await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=_batch()))
    assert parts.statuses.marks == [("org-1", "txn-1", PendingStatus.BUFFERED)]

    class _Flushing(_Buffer):
        async def accept(
            self, organization_id: str, user_id: str | None, batch: events_pb2.EventBatch
        ) -> BufferOutcome:
            return BufferOutcome(
                ingest_pb2.BATCH_DISPOSITION_FLUSHED, ingest_pb2.FLUSH_REASON_TRIGGER
            )

    parts.intake.buffer = _Flushing()
    await parts.intake.submit(SESSION, ingest_pb2.SubmitBatchRequest(batch=_batch()))
    assert parts.statuses.marks[-1] == ("org-1", "txn-1", PendingStatus.SCORING)
