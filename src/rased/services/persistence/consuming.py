"""The consumer-group loop: poll, persist, and only then commit (at-least-once).

A poll's messages are written concurrently; their offsets are committed once every one of
them is stored. While a store is unavailable the loop pauses its partitions (it keeps
polling, so it stays in the group), waits with backoff and writes the same messages again;
nothing is committed before it is written. A redelivery after a crash or a rebalance
rewrites the same rows (deterministic keys), so at-least-once delivery stores each event once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from google.protobuf.message import DecodeError
from opentelemetry import propagate, trace
from prometheus_client import Counter

from rased.adapters.kafka.event_bus import CORRELATION_HEADER
from rased.common.correlation import accept_correlation_id
from rased.services.persistence.backoff import Backoff
from rased.services.persistence.rows import UnstorableTransaction
from rased.v1 import pipeline_pb2

logger = logging.getLogger(__name__)

MESSAGES = Counter(
    "rased_persistence_messages_total",
    "Compiled transactions handled by the persistence worker, by outcome.",
    ["outcome"],
)
EVENTS_WRITTEN = Counter("rased_persistence_events_written_total", "Event rows written.")
RETRIES = Counter(
    "rased_persistence_retries_total", "Rounds of writes retried after a store failed."
)

Offsets = dict[TopicPartition, int]

_tracer = trace.get_tracer(__name__)


class Persister(Protocol):
    """What the loop hands each compiled transaction to."""

    async def persist(self, compiled: pipeline_pb2.CompiledTransaction) -> int:
        """Store one compiled transaction; return the number of events."""
        ...


class StopRequested(Exception):
    """Shutdown began while messages were still unwritten: they are left uncommitted."""


class PersistenceLoop:
    """Consumes data_persistence and persists each message before committing its offset."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        persister: Persister,
        backoff: Backoff,
        max_records: int = 200,
        poll_timeout_ms: int = 500,
    ) -> None:
        self._consumer = consumer
        self._persister = persister
        self._backoff = backoff
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop after the messages in hand are written and committed (or now, if waiting)."""
        self._stop.set()

    async def run(self) -> None:
        """Poll, persist and commit until request_stop()."""
        failures = 0
        while not self._stop.is_set():
            try:
                offsets = await self.poll_and_persist()
            except StopRequested:
                logger.info("stopped with unwritten messages; they stay uncommitted")
                return
            except KafkaError as exc:
                # The fetch failed (broker away): nothing was taken, so nothing is lost.
                logger.warning("polling Kafka failed: %s", exc)
                await asyncio.sleep(self._backoff.delay(failures))
                failures += 1
                continue
            failures = 0
            if offsets:
                await self.commit(offsets)

    async def poll_and_persist(self) -> Offsets:
        """Take one poll's messages, write them all; return the offsets to commit next."""
        polled = await self._consumer.getmany(
            timeout_ms=self._poll_timeout_ms, max_records=self._max_records
        )
        records = [record for batch in polled.values() for record in batch]
        if not records:
            return {}
        await self._persist_until_written(records)
        return {tp: batch[-1].offset + 1 for tp, batch in polled.items() if batch}

    async def commit(self, offsets: Offsets) -> None:
        """Commit offsets of written messages; a lost partition's are left to its new owner."""
        owned = {tp: offset for tp, offset in offsets.items() if tp in self._consumer.assignment()}
        if not owned:
            return
        try:
            await self._consumer.commit(owned)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # A rebalance took the partitions (or Kafka is away): the messages come again
            # and are rewritten to the same rows; nothing is lost.
            logger.warning("commit failed, messages will be redelivered: %s", exc)

    async def _persist_until_written(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        pending = list(records)
        attempt = 0
        last_error: BaseException | None = None
        while True:
            outcomes = await asyncio.gather(
                *(self._persist(record) for record in pending), return_exceptions=True
            )
            failed: list[ConsumerRecord[bytes, bytes]] = []
            for record, outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if isinstance(outcome, asyncio.CancelledError):
                        raise outcome
                    failed.append(record)
                    last_error = outcome
            if not failed:
                if attempt:
                    self._consumer.resume(*self._consumer.paused())
                    logger.info("stores are back; %d messages written after retrying", len(records))
                return
            if attempt == 0:
                logger.warning(
                    "%d of %d messages not written (%s: %s); pausing and retrying",
                    len(failed),
                    len(pending),
                    type(last_error).__name__,
                    last_error,
                )
            RETRIES.inc()
            pending = failed
            await self._wait(self._backoff.delay(attempt))
            attempt += 1

    async def _persist(self, record: ConsumerRecord[bytes, bytes]) -> None:
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
        accept_correlation_id(headers.get(CORRELATION_HEADER))
        try:
            # The producer's trace continues here (W3C trace context in the headers).
            with _tracer.start_as_current_span(
                "process rased.v1.CompiledTransaction",
                context=propagate.extract(headers),
                kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.system": "kafka", "messaging.kafka.offset": record.offset},
            ):
                compiled = pipeline_pb2.CompiledTransaction.FromString(record.value or b"")
                written = await self._persister.persist(compiled)
        except (DecodeError, UnstorableTransaction) as exc:
            # Retrying cannot help; skipping keeps one bad message from stopping the
            # partition. The raw message stays in the topic (its retention) for inspection.
            MESSAGES.labels("unstorable").inc()
            logger.error(
                "message %s[%d]@%d can never be stored, skipped: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return
        MESSAGES.labels("written").inc()
        EVENTS_WRITTEN.inc(written)

    async def _wait(self, seconds: float) -> None:
        """Wait before a retry while polling paused partitions, so the group keeps us.

        A poll answers nothing from paused partitions; a partition assigned meanwhile (a
        rebalance) may answer before it is paused, and is rewound so nothing is skipped.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            if self._stop.is_set():
                raise StopRequested
            self._consumer.pause(*self._consumer.assignment())
            polled = await self._consumer.getmany(timeout_ms=max(1, int(min(left, 0.5) * 1000)))
            for tp, batch in polled.items():
                if batch:
                    self._consumer.seek(tp, batch[0].offset)
        if self._stop.is_set():
            raise StopRequested
