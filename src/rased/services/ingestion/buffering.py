"""Buffering a transaction's batches and compiling them into segments when a trigger fires.

Flow of one segment: the batches are appended to the transaction's buffer; a trigger (the
batch's flag, more than `max_batches`, `max_bytes` reached, or `idle_timeout` without a
batch) moves the buffer atomically to a flushing segment with the next segment number; the
segment is published to ai_processing and data_persistence; then it is deleted. A process
that dies between move and delete leaves the segment in flushing, reachable from an index;
`recover_stale` re-publishes it byte for byte (same segment number, reason and
compiled_at), so the consumers' deduplication on (organization, transaction, segment)
absorbs a second copy. A re-published message carries the `rased-redelivery: recovery`
header; its flush reason stays the original one (FLUSH_REASON_RECOVERY is never written:
changing the reason would make the two copies differ).

Compiling does not parse the batches: each is stored framed as field 6 (`batches`) of
CompiledTransaction, so the message is its other fields serialized, followed by the stored
bytes, which is valid protobuf (fields may come in any order; repeated ones concatenate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from rased.services.ingestion.buffer_store import (
    EventBufferStore,
    MoveStatus,
    Segment,
    TransactionKey,
)
from rased.services.ingestion.ports import BufferOutcome, BufferPolicy
from rased.v1 import events_pb2, ingest_pb2, pipeline_pb2

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Seconds since the Unix epoch, like `time.time` (tests inject their own)."""

_TRIGGER = ingest_pb2.FLUSH_REASON_TRIGGER
_COUNT = ingest_pb2.FLUSH_REASON_BATCH_COUNT
_SIZE = ingest_pb2.FLUSH_REASON_SIZE
_BUFFERED = ingest_pb2.BATCH_DISPOSITION_BUFFERED
_FLUSHED = ingest_pb2.BATCH_DISPOSITION_FLUSHED
_DUPLICATE = ingest_pb2.BATCH_DISPOSITION_DUPLICATE
# Field 6 (`batches`) of CompiledTransaction, wire type 2 (length-delimited).
_BATCHES_TAG = bytes([(pipeline_pb2.CompiledTransaction.BATCHES_FIELD_NUMBER << 3) | 2])


class CompiledPublisher(Protocol):
    """Where compiled segments go (`rased.adapters.kafka.event_bus.KafkaEventBus`)."""

    async def publish_compiled_payload(
        self,
        organization_id: str,
        transaction_id: str,
        payload: bytes,
        *,
        redelivery: bool = False,
    ) -> None:
        """Publish a serialized CompiledTransaction durably (acks=all) before returning."""
        ...


def varint(value: int) -> bytes:
    """Encode a non-negative integer as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame_batch(serialized: bytes) -> bytes:
    """Frame a serialized EventBatch as one `batches` entry of a CompiledTransaction."""
    return _BATCHES_TAG + varint(len(serialized)) + serialized


def compile_segment(segment: Segment) -> bytes:
    """Serialize a segment as a CompiledTransaction: deterministic for the same segment."""
    transaction = segment.transaction
    header = pipeline_pb2.CompiledTransaction(
        organization_id=transaction.organization_id,
        session_id=transaction.session_id,
        transaction_id=transaction.transaction_id,
        segment=segment.segment,
        flush_reason=_reason(segment.reason),
        batch_count=segment.batch_count,
        event_count=segment.event_count,
        byte_count=segment.byte_count,
        first_event_ms=segment.first_event_ms,
        last_event_ms=segment.last_event_ms,
        user_id=segment.user_id,
        triggered_at_ms=segment.triggered_at_ms,
    )
    # The move time, stored with the segment: a re-publication compiles the same bytes.
    header.compiled_at.FromMilliseconds(segment.moved_at_ms)
    return header.SerializeToString(deterministic=True) + segment.payload


def threshold_reason(
    batches: int, byte_count: int, policy: BufferPolicy
) -> ingest_pb2.FlushReason.ValueType | None:
    """The size trigger that fires for a buffer of this many batches and bytes, if any."""
    if batches > policy.max_batches:
        return _COUNT
    if byte_count >= policy.max_bytes:
        return _SIZE
    return None


class TransactionBuffering:
    """Buffers batches per transaction in a store and publishes each segment once.

    Several instances (processes) may share one store: appends, moves and index claims are
    atomic in the store, so each segment is moved by exactly one of them.
    """

    def __init__(
        self,
        store: EventBufferStore,
        publisher: CompiledPublisher,
        policy: BufferPolicy,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._policy = policy
        self._clock = clock
        self._idle_ms = _ms(policy.idle_timeout.total_seconds())
        self._stale_ms = _ms(policy.stale_flush_after.total_seconds())
        self._inflight: set[asyncio.Task[None]] = set()

    def _now_ms(self, now: float | None) -> int:
        return _ms(self._clock() if now is None else now)

    # -- the request path ----------------------------------------------------------------

    async def accept(
        self, organization_id: str, user_id: str | None, batch: events_pb2.EventBatch
    ) -> BufferOutcome:
        """Buffer one valid batch (idempotent on batch_id); flush if a trigger fires.

        Raises:
            DependencyUnavailable: the store or the bus is down (a moved segment stays
                safe in the store and is published by recovery).
        """
        now_ms = self._now_ms(None)
        serialized = batch.SerializeToString()
        events = batch.events
        first_ms: int | None = None
        last_ms: int | None = None
        if events:
            stamps = [event.timestamp_ms for event in events]
            first_ms, last_ms = min(stamps), max(stamps)
        transaction = TransactionKey(organization_id, batch.session_id, batch.transaction_id)
        result = await self._store.append(
            transaction,
            batch.batch_id,
            frame_batch(serialized),
            len(serialized),
            len(events),
            first_ms,
            last_ms,
            user_id or "",
            now_ms,
            _TRIGGER if batch.trigger else None,
        )
        if result.moved is not None:
            await self._flush(result.moved)
            return _flushed(result.moved)
        # Checked for duplicates too: a retry heals a threshold flush its first attempt missed.
        if threshold_reason(result.batches, result.bytes, self._policy) is not None:
            flushed = _DUPLICATE if result.duplicate else _FLUSHED
            moved = await self._store.move_over_threshold(transaction, now_ms)
            if moved.segment is not None:
                await self._flush(moved.segment)
                return _flushed(moved.segment, flushed)
            if moved.status is MoveStatus.NOTHING:
                # Another process moved the buffer, this batch included, after our append.
                return BufferOutcome(
                    disposition=flushed,
                    flush_reason=_reason(moved.last_reason),
                    segment=moved.last_segment,
                )
        return BufferOutcome(
            disposition=_DUPLICATE if result.duplicate else _BUFFERED,
            buffered_batches=result.batches,
            buffered_bytes=result.bytes,
        )

    # -- publishing ----------------------------------------------------------------------

    async def _flush(self, segment: Segment, redelivery: bool = False) -> None:
        """Publish then forget a moved segment, shielded from the caller's cancellation.

        A cancelled request (a client gone, a shutdown past its grace period) does not cut
        a flush in half; `drain` waits for the flushes still running.
        """
        task = asyncio.ensure_future(self._publish_and_finish(segment, redelivery))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        await asyncio.shield(task)

    async def _publish_and_finish(self, segment: Segment, redelivery: bool) -> None:
        transaction = segment.transaction
        await self._publisher.publish_compiled_payload(
            transaction.organization_id,
            transaction.transaction_id,
            compile_segment(segment),
            redelivery=redelivery,
        )
        await self._store.finish(segment)
        logger.info(
            "flushed segment %d of a transaction (%s, %d batches)",
            segment.segment,
            ingest_pb2.FlushReason.Name(_reason(segment.reason)),
            segment.batch_count,
            extra={
                "organization_id": transaction.organization_id,
                "transaction_id": transaction.transaction_id,
                "redelivery": redelivery,
            },
        )

    async def drain(self) -> None:
        """Wait until every flush started so far has finished (or failed)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    # -- the sweeper ---------------------------------------------------------------------

    async def sweep_once(self, now: float | None = None) -> int:
        """Flush the transactions idle for idle_timeout at `now`; return how many."""
        now_ms = self._now_ms(now)
        flushed = await asyncio.gather(
            *(self._sweep_shard(shard, now_ms) for shard in range(self._store.shards))
        )
        return sum(flushed)

    async def _sweep_shard(self, shard: int, now_ms: int) -> int:
        flushed = 0
        while True:
            # The lease keeps other sweepers off a claimed deadline; a sweeper that dies
            # leaves it due again when the lease runs out.
            claimed, lease = await self._store.claim_due(shard, now_ms, self._stale_ms)
            if not claimed:
                return flushed
            results = await self._store.move_if_idle(claimed, now_ms)
            segments = [result.segment for result in results if result.segment is not None]
            outcomes = await asyncio.gather(
                *(self._flush(segment) for segment in segments), return_exceptions=True
            )
            # A moved segment no longer needs its deadline (the flush index covers it if
            # its publication failed); a transaction that got a batch since keeps one.
            await self._store.settle_deadlines(
                [
                    (
                        transaction,
                        lease,
                        result.last_append_ms + self._idle_ms
                        if result.status is MoveStatus.NOT_DUE
                        else None,
                    )
                    for transaction, result in zip(claimed, results, strict=True)
                ]
            )
            failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
            if failures:
                raise failures[0]
            flushed += len(segments)

    async def recover_stale(self, now: float | None = None) -> int:
        """Re-publish segments left in flushing for stale_flush_after; return how many."""
        now_ms = self._now_ms(now)
        recovered = await asyncio.gather(
            *(self._recover_shard(shard, now_ms) for shard in range(self._store.shards))
        )
        return sum(recovered)

    async def _recover_shard(self, shard: int, now_ms: int) -> int:
        recovered = 0
        while True:
            members = await self._store.claim_stale_flushes(shard, now_ms, self._stale_ms)
            if not members:
                return recovered
            # Several entries of one transaction: read its segments once.
            by_transaction: dict[str, list[str]] = {}
            for member in members:
                by_transaction.setdefault(member.rsplit("/", 1)[0], []).append(member)
            for entries in by_transaction.values():
                segments = await self._store.stale_segments(entries[0], now_ms - self._stale_ms)
                for segment in segments:
                    logger.warning(
                        "re-publishing segment %d of a transaction left in flushing",
                        segment.segment,
                        extra={
                            "organization_id": segment.transaction.organization_id,
                            "transaction_id": segment.transaction.transaction_id,
                        },
                    )
                    await self._flush(segment, redelivery=True)
                    recovered += 1
                for member in entries:
                    await self._store.drop_flush_entry(member)

    async def run(self, stop: asyncio.Event) -> None:
        """Recover and sweep every sweep_interval until `stop` is set, then drain.

        The first round runs at once (start-up recovery). A round in progress when `stop`
        is set completes: no flush is left half-way.
        """
        interval = self._policy.sweep_interval.total_seconds()
        while not stop.is_set():
            try:
                await self.recover_stale()
                await self.sweep_once()
            except Exception:
                # The next round retries; what was moved stays safe in the store.
                logger.exception("buffer sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
        await self.drain()


def _reason(number: int) -> ingest_pb2.FlushReason.ValueType:
    """A flush reason read back from the store, where it is kept as its number."""
    return ingest_pb2.FlushReason.ValueType(number)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _flushed(
    segment: Segment, disposition: ingest_pb2.BatchDisposition.ValueType = _FLUSHED
) -> BufferOutcome:
    return BufferOutcome(
        disposition=disposition,
        flush_reason=_reason(segment.reason),
        segment=segment.segment,
    )
