"""A consumer-group loop that commits offsets only after every message's effect is done.

At-least-once: a poll's messages are handled concurrently and their offsets committed once
all of them succeeded. While a dependency is unavailable the loop pauses its partitions (it
keeps polling, so it stays in the group), waits with backoff and handles the failed messages
again; nothing is committed before it is handled. Handlers must therefore be idempotent (a
redelivery after a crash or a rebalance handles the same message again).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry import propagate, trace
from prometheus_client import Counter

from rased.adapters.kafka.event_bus import CORRELATION_HEADER
from rased.common.backoff import Backoff
from rased.common.correlation import accept_correlation_id

logger = logging.getLogger(__name__)

MESSAGES = Counter(
    "rased_kafka_consumer_messages_total",
    "Messages handled by a commit-after-effect consumer loop, by loop and outcome.",
    ["loop", "outcome"],
)
RETRIES = Counter(
    "rased_kafka_consumer_retries_total",
    "Rounds of handling retried after a dependency failed, by loop.",
    ["loop"],
)

Offsets = dict[TopicPartition, int]
Record: TypeAlias = ConsumerRecord[bytes, bytes]
Handler: TypeAlias = Callable[[Record], Awaitable[None]]

_tracer = trace.get_tracer(__name__)


class Unprocessable(Exception):
    """A message that no retry can handle: it is logged, counted and skipped."""


class StopRequested(Exception):
    """Shutdown began while messages were still unhandled: they are left uncommitted."""


class PollLoop(ABC):
    """Polls a group consumer, hands each poll to `handle_poll`, then commits its offsets.

    Subclasses decide how a poll is handled; while they wait to retry (`wait_to_retry`) the
    partitions are paused, so nothing new arrives and the group keeps its member.
    """

    def __init__(
        self,
        name: str,
        consumer: AIOKafkaConsumer,
        backoff: Backoff,
        max_records: int = 200,
        poll_timeout_ms: int = 500,
    ) -> None:
        self._name = name
        self._consumer = consumer
        self._backoff = backoff
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop after the messages in hand are handled and committed (or now, if waiting)."""
        self._stop.set()

    async def run(self) -> None:
        """Poll, handle and commit until request_stop()."""
        failures = 0
        while not self._stop.is_set():
            try:
                offsets = await self.poll_and_handle()
            except StopRequested:
                logger.info("%s stopped with unhandled messages; they stay uncommitted", self._name)
                return
            except KafkaError as exc:
                # The fetch failed (broker away): nothing was taken, so nothing is lost.
                logger.warning("%s: polling Kafka failed: %s", self._name, exc)
                await asyncio.sleep(self._backoff.delay(failures))
                failures += 1
                continue
            failures = 0
            if offsets:
                await self.commit(offsets)

    async def poll_and_handle(self) -> Offsets:
        """Take one poll's messages, handle them all; return the offsets to commit next."""
        polled = await self._consumer.getmany(
            timeout_ms=self._poll_timeout_ms, max_records=self._max_records
        )
        records = [record for batch in polled.values() for record in batch]
        if not records:
            return {}
        await self.handle_poll(records)
        return {tp: batch[-1].offset + 1 for tp, batch in polled.items() if batch}

    @abstractmethod
    async def handle_poll(self, records: Sequence[Record]) -> None:
        """Handle every record of one poll; return only once each one's effect is done."""

    async def commit(self, offsets: Offsets) -> None:
        """Commit handled offsets; a lost partition's are left to its new owner."""
        owned = {tp: offset for tp, offset in offsets.items() if tp in self._consumer.assignment()}
        if not owned:
            return
        try:
            await self._consumer.commit(owned)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # A rebalance took the partitions (or Kafka is away): the messages come again
            # and are handled again (idempotently); nothing is lost.
            logger.warning("%s: commit failed, messages will be redelivered: %s", self._name, exc)

    def resume_after_retry(self) -> None:
        """Resume the partitions paused while waiting to retry."""
        self._consumer.resume(*self._consumer.paused())

    async def wait_to_retry(self, attempt: int) -> None:
        """Wait the backoff of `attempt` while polling paused partitions (the group keeps us).

        A poll answers nothing from paused partitions; a partition assigned meanwhile (a
        rebalance) may answer before it is paused, and is rewound so nothing is skipped.

        Raises:
            StopRequested: shutdown began; the messages in hand stay uncommitted.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._backoff.delay(attempt)
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


class CommitAfterEffectLoop(PollLoop):
    """Hands every message of a poll to `handler` (concurrently), then commits the poll."""

    def __init__(
        self,
        name: str,
        consumer: AIOKafkaConsumer,
        handler: Handler,
        backoff: Backoff,
        max_records: int = 200,
        poll_timeout_ms: int = 500,
    ) -> None:
        super().__init__(name, consumer, backoff, max_records, poll_timeout_ms)
        self._handler = handler

    async def handle_poll(self, records: Sequence[Record]) -> None:
        """Handle every record, retrying the failed ones until all succeeded."""
        await self._handle_until_done(records)

    async def _handle_until_done(self, records: Sequence[Record]) -> None:
        pending = list(records)
        attempt = 0
        while True:
            outcomes = await asyncio.gather(
                *(self._handle(record) for record in pending), return_exceptions=True
            )
            failed: list[Record] = []
            last_error: BaseException | None = None
            for record, outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if isinstance(outcome, asyncio.CancelledError):
                        raise outcome
                    failed.append(record)
                    last_error = outcome
            if not failed:
                if attempt:
                    self.resume_after_retry()
                    logger.info("%s: dependencies are back after retrying", self._name)
                return
            if attempt == 0:
                logger.warning(
                    "%s: %d of %d messages not handled (%s: %s); pausing and retrying",
                    self._name,
                    len(failed),
                    len(pending),
                    type(last_error).__name__,
                    last_error,
                )
            RETRIES.labels(self._name).inc()
            pending = failed
            await self.wait_to_retry(attempt)
            attempt += 1

    async def _handle(self, record: Record) -> None:
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
        accept_correlation_id(headers.get(CORRELATION_HEADER))
        try:
            # The producer's trace continues here (W3C trace context in the headers).
            with _tracer.start_as_current_span(
                f"process {record.topic}",
                context=propagate.extract(headers),
                kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.system": "kafka", "messaging.kafka.offset": record.offset},
            ):
                await self._handler(record)
        except Unprocessable as exc:
            # Retrying cannot help; skipping keeps one bad message from stopping the
            # partition. The raw message stays in the topic (its retention) for inspection.
            MESSAGES.labels(self._name, "unprocessable").inc()
            logger.error(
                "%s: message %s[%d]@%d can never be handled, skipped: %s",
                self._name,
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return
        MESSAGES.labels(self._name, "handled").inc()
