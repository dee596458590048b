"""The front door's rules: authenticate, limit, decrypt, size-check, validate, then buffer.

Everything an authenticated caller sends that is refused is published to the rejected-events
topic with the reason and the raw bytes before the caller hears "no": nothing accepted or
rejected is silently lost. Events that break their rules are dropped one by one from an
otherwise good batch; a batch whose envelope is wrong is refused whole.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import protovalidate
from google.protobuf import json_format, timestamp_pb2

from rased.common.errors import (
    DecryptionFailed,
    FieldViolation,
    PayloadTooLarge,
    PermissionDenied,
    ValidationFailed,
)
from rased.common.interceptors.validation import violations_of
from rased.services.ingestion.ports import (
    Authenticator,
    BatchBuffer,
    BatchDecryptor,
    BufferOutcome,
    Caller,
    RateLimiter,
    RejectionSink,
    TransactionStatusSink,
)
from rased.services.results.ports import PendingStatus
from rased.v1 import events_pb2, ingest_pb2, pipeline_pb2

logger = logging.getLogger(__name__)

_EVENT_PATH = re.compile(r"^events\[(\d+)\]")


@dataclass(frozen=True)
class IntakeLimits:
    """Size limits of one batch."""

    max_batch_bytes: int
    max_events_per_batch: int
    max_event_bytes: int
    kafka_max_message_bytes: int


class BatchIntake:
    """Takes one request from the SDK to a buffered batch, or to a recorded rejection."""

    def __init__(
        self,
        authenticator: Authenticator,
        decryptor: BatchDecryptor,
        buffer: BatchBuffer,
        rejections: RejectionSink,
        rate_limits: RateLimiter,
        limits: IntakeLimits,
        validator: protovalidate.Validator | None = None,
        statuses: TransactionStatusSink | None = None,
    ) -> None:
        """Wire the intake to its collaborators."""
        self.statuses = statuses
        self.authenticator = authenticator
        self.decryptor = decryptor
        self.buffer = buffer
        self.rejections = rejections
        self.rate_limits = rate_limits
        self.limits = limits
        self.validator = validator or protovalidate.Validator()

    async def authenticate(self, authorization: str | None, origin: str | None) -> Caller:
        """Check the caller's credential for ingestion."""
        return await self.authenticator.authenticate_ingest(authorization, origin)

    async def submit(
        self, caller: Caller, request: ingest_pb2.SubmitBatchRequest
    ) -> ingest_pb2.SubmitBatchResponse:
        """Accept one batch from an authenticated caller; raise a domain error to refuse it."""
        # Limits first, before any costly work; an encrypted batch from a publishable key
        # has no readable session yet, so only its organization's limit applies fully.
        session = caller.session_id or (
            request.batch.session_id if request.HasField("batch") else "encrypted"
        )
        await self.rate_limits.hit(caller.organization_id, session)
        size = request.ByteSize()
        if size > self.limits.max_batch_bytes:
            await self._reject(
                caller,
                None,
                pipeline_pb2.REJECTION_STAGE_SIZE_LIMIT,
                f"batch of {size} bytes exceeds {self.limits.max_batch_bytes}",
                request.SerializeToString(),
            )
            raise PayloadTooLarge(
                f"batch of {size} bytes exceeds the limit of {self.limits.max_batch_bytes}",
                self.limits.max_batch_bytes,
                size,
            )
        batch = await self._open(caller, request)
        batch, rejected = await self._validate(caller, batch)
        outcome = await self.buffer.accept(caller.organization_id, caller.user_id, batch)
        await self._record_status(caller.organization_id, batch.transaction_id, outcome)
        return _response(batch, outcome, rejected)

    async def _record_status(
        self, organization_id: str, transaction_id: str, outcome: BufferOutcome
    ) -> None:
        # Once when a transaction starts and once per flush, not per batch: GetResult then
        # answers "buffered" or "scoring" instead of NOT_FOUND.
        if self.statuses is None:
            return
        if outcome.disposition == ingest_pb2.BATCH_DISPOSITION_FLUSHED:
            await self.statuses.mark(organization_id, transaction_id, PendingStatus.SCORING)
        elif (
            outcome.disposition == ingest_pb2.BATCH_DISPOSITION_BUFFERED
            and outcome.buffered_batches == 1
        ):
            await self.statuses.mark(organization_id, transaction_id, PendingStatus.BUFFERED)

    async def _open(
        self, caller: Caller, request: ingest_pb2.SubmitBatchRequest
    ) -> events_pb2.EventBatch:
        if request.WhichOneof("payload") != "encrypted_batch":
            return request.batch
        try:
            plaintext = await self.decryptor.decrypt(
                caller.organization_id, request.encrypted_batch
            )
        except DecryptionFailed as error:
            stage = pipeline_pb2.REJECTION_STAGE_DECRYPT
            await self._reject(caller, None, stage, str(error), request.SerializeToString())
            raise
        if len(plaintext) > self.limits.max_batch_bytes:
            await self._reject(
                caller,
                None,
                pipeline_pb2.REJECTION_STAGE_SIZE_LIMIT,
                f"decrypted batch of {len(plaintext)} bytes exceeds {self.limits.max_batch_bytes}",
                plaintext,
            )
            raise PayloadTooLarge(
                "decrypted batch exceeds the size limit",
                self.limits.max_batch_bytes,
                len(plaintext),
            )
        batch = events_pb2.EventBatch()
        try:
            json_format.Parse(plaintext, batch)
        except json_format.ParseError as error:
            reason = f"decrypted batch is not a protobuf-JSON EventBatch: {error}"
            await self._reject(caller, None, pipeline_pb2.REJECTION_STAGE_DECODE, reason, plaintext)
            raise ValidationFailed(
                [FieldViolation("encrypted_batch", reason, "decode")], message=reason
            ) from None
        return batch

    async def _validate(
        self, caller: Caller, batch: events_pb2.EventBatch
    ) -> tuple[events_pb2.EventBatch, list[ingest_pb2.EventRejection]]:
        if len(batch.events) > self.limits.max_events_per_batch:
            reason = (
                f"batch holds {len(batch.events)} events; the limit is "
                f"{self.limits.max_events_per_batch}"
            )
            stage = pipeline_pb2.REJECTION_STAGE_SIZE_LIMIT
            await self._reject(caller, batch, stage, reason, batch.SerializeToString())
            raise PayloadTooLarge(reason, self.limits.max_events_per_batch, len(batch.events))
        if caller.session_id is not None and batch.session_id != caller.session_id:
            reason = "the batch's session_id is not the session of the token"
            stage = pipeline_pb2.REJECTION_STAGE_SCOPE
            await self._reject(caller, batch, stage, reason, batch.SerializeToString())
            raise PermissionDenied(reason)

        whole: list[FieldViolation] = []
        per_event: dict[int, list[FieldViolation]] = {}
        for violation in violations_of(self.validator, batch):
            match = _EVENT_PATH.match(violation.field)
            if match:
                per_event.setdefault(int(match.group(1)), []).append(violation)
            else:
                whole.append(violation)
        for index, event in enumerate(batch.events):
            size = event.ByteSize()
            if size > self.limits.max_event_bytes:
                per_event.setdefault(index, []).append(
                    FieldViolation(
                        f"events[{index}]",
                        f"event of {size} bytes exceeds {self.limits.max_event_bytes}",
                        "max_event_bytes",
                    )
                )
        if not whole and len(per_event) == len(batch.events):
            whole = [v for found in per_event.values() for v in found]
        if whole:
            reason = "; ".join(f"{v.field}: {v.description}" for v in whole[:10])
            stage = pipeline_pb2.REJECTION_STAGE_VALIDATION
            paths = list(dict.fromkeys(v.field for v in whole))
            raw = batch.SerializeToString()
            await self._reject(caller, batch, stage, reason, raw, paths=paths)
            raise ValidationFailed(whole)
        if not per_event:
            return batch, []

        rejections: list[ingest_pb2.EventRejection] = []
        kept = events_pb2.EventBatch()
        kept.CopyFrom(batch)
        del kept.events[:]
        for index, event in enumerate(batch.events):
            found = per_event.get(index)
            if found is None:
                kept.events.append(event)
                continue
            reason = "; ".join(f"{v.field}: {v.description}" for v in found)
            paths = list(dict.fromkeys(v.field for v in found))
            await self._reject(
                caller,
                batch,
                pipeline_pb2.REJECTION_STAGE_VALIDATION,
                reason,
                event.SerializeToString(),
                event_index=index,
                paths=paths,
            )
            rejections.append(
                ingest_pb2.EventRejection(index=index, reason=reason, field_paths=paths)
            )
        logger.info(
            "dropped %d of %d events from batch %s",
            len(rejections),
            len(batch.events),
            batch.batch_id,
        )
        return kept, rejections

    async def _reject(
        self,
        caller: Caller,
        batch: events_pb2.EventBatch | None,
        stage: pipeline_pb2.RejectionStage.ValueType,
        reason: str,
        raw: bytes,
        event_index: int = -1,
        paths: list[str] | None = None,
    ) -> None:
        # The rejection must fit in one Kafka message; the envelope takes well under 64 KiB.
        room = self.limits.kafka_max_message_bytes - 64 * 1024
        rejected = pipeline_pb2.RejectedBatch(
            organization_id=caller.organization_id,
            session_id=caller.session_id or (batch.session_id if batch else ""),
            transaction_id=batch.transaction_id if batch else "",
            batch_id=batch.batch_id if batch else "",
            event_index=event_index,
            stage=stage,
            reason=reason[:4000],
            field_paths=paths or [],
            raw=raw[:room],
            rejected_at=_now(),
        )
        await self.rejections.publish_rejected(rejected)
        logger.info(
            "rejected %s from organization %s: %s",
            "batch" if event_index < 0 else f"event {event_index}",
            caller.organization_id,
            pipeline_pb2.RejectionStage.Name(stage),
        )


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _response(
    batch: events_pb2.EventBatch,
    outcome: BufferOutcome,
    rejected: list[ingest_pb2.EventRejection],
) -> ingest_pb2.SubmitBatchResponse:
    return ingest_pb2.SubmitBatchResponse(
        batch_id=batch.batch_id,
        transaction_id=batch.transaction_id,
        disposition=outcome.disposition,
        flush_reason=outcome.flush_reason,
        buffered_batches=outcome.buffered_batches,
        buffered_bytes=outcome.buffered_bytes,
        segment=outcome.segment,
        rejected_events=rejected,
    )
