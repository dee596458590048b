"""The scoring consumer-group loop: poll, score the poll as one batch, and only then commit.

A poll's offsets are committed once every one of its transactions is stored and announced.
While the model server (without a fallback) or a store is unavailable, the loop pauses its
partitions (it keeps polling, so it stays in the group), waits with backoff and scores the
same batch again; nothing is committed before it is stored. It mirrors the generic
`rased.adapters.kafka.consumer.CommitAfterEffectLoop`, which hands messages over one at a
time; scoring needs the whole poll at once (one model request per poll), so it keeps its own
loop until that one takes a batch handler.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from google.protobuf.message import DecodeError
from prometheus_client import Counter

from rased.common.backoff import Backoff
from rased.common.errors import DependencyUnavailable
from rased.services.scoring.ports import ModelUnavailable
from rased.services.scoring.scoring import Scorer
from rased.v1 import pipeline_pb2

logger = logging.getLogger(__name__)

UNSCORABLE = Counter(
    "rased_scoring_unscorable_total", "Messages skipped because they can never be scored."
)
RETRIES = Counter("rased_scoring_retries_total", "Batches scored again after a dependency failed.")

Offsets = dict[TopicPartition, int]


class StopRequested(Exception):
    """Shutdown began while a batch was still unscored: it is left uncommitted."""


def decode(record: ConsumerRecord[bytes, bytes]) -> pipeline_pb2.CompiledTransaction | None:
    """Return the compiled transaction of a record, or None if it can never be scored."""
    try:
        compiled = pipeline_pb2.CompiledTransaction.FromString(record.value or b"")
        uuid.UUID(compiled.organization_id)
    except (DecodeError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        if compiled.transaction_id:
            return compiled
        reason = "no transaction id"
    # Retrying cannot help; the raw message stays in the topic (its retention) for inspection.
    UNSCORABLE.inc()
    logger.error(
        "message %s[%d]@%d can never be scored, skipped: %s",
        record.topic,
        record.partition,
        record.offset,
        reason,
    )
    return None


class ScoringLoop:
    """Consumes ai_processing and scores each poll before committing its offsets."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        scorer: Scorer,
        backoff: Backoff,
        max_records: int = 64,
        poll_timeout_ms: int = 200,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._consumer = consumer
        self._scorer = scorer
        self._backoff = backoff
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._clock = clock or asyncio.get_running_loop().time
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop after the batch in hand is scored and committed (or now, if waiting)."""
        self._stop.set()

    async def run(self) -> None:
        """Poll, score and commit until request_stop()."""
        failures = 0
        while not self._stop.is_set():
            try:
                offsets = await self.poll_and_score()
            except StopRequested:
                logger.info("stopped with unscored messages; they stay uncommitted")
                return
            except KafkaError as exc:
                logger.warning("polling Kafka failed: %s", exc)
                await asyncio.sleep(self._backoff.delay(failures))
                failures += 1
                continue
            failures = 0
            if offsets:
                await self.commit(offsets)

    async def poll_and_score(self) -> Offsets:
        """Take one poll's messages, score them as one batch; return the offsets to commit."""
        polled = await self._consumer.getmany(
            timeout_ms=self._poll_timeout_ms, max_records=self._max_records
        )
        received_at = self._clock()
        records = [record for batch in polled.values() for record in batch]
        if not records:
            return {}
        batch = [c for c in (decode(record) for record in records) if c is not None]
        if batch:
            await self._score_until_stored(batch, received_at)
        return {tp: batch[-1].offset + 1 for tp, batch in polled.items() if batch}

    async def commit(self, offsets: Offsets) -> None:
        """Commit offsets of scored messages; a lost partition's are left to its new owner."""
        owned = {tp: offset for tp, offset in offsets.items() if tp in self._consumer.assignment()}
        if not owned:
            return
        try:
            await self._consumer.commit(owned)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Redelivered messages find their stored results and are only re-announced.
            logger.warning("commit failed, messages will be redelivered: %s", exc)

    async def _score_until_stored(
        self, batch: Sequence[pipeline_pb2.CompiledTransaction], received_at: float
    ) -> None:
        attempt = 0
        while True:
            try:
                await self._scorer.score(batch, received_at)
            except (ModelUnavailable, DependencyUnavailable, KafkaError) as exc:
                if attempt == 0:
                    logger.warning(
                        "%d transactions not scored (%s: %s); pausing and retrying",
                        len(batch),
                        type(exc).__name__,
                        exc,
                    )
                RETRIES.inc()
                await self._wait(self._backoff.delay(attempt))
                attempt += 1
                continue
            except Exception:
                # Not a dependency being away: some message cannot be scored (e.g. its
                # organization was erased). Score one by one and skip only the culprit.
                if len(batch) > 1:
                    logger.warning("a batch failed; scoring its %d messages one by one", len(batch))
                    for compiled in batch:
                        await self._score_until_stored([compiled], received_at)
                    return
                UNSCORABLE.inc()
                logger.exception(
                    "transaction %s/%s segment %d can never be scored, skipped",
                    batch[0].organization_id,
                    batch[0].transaction_id,
                    batch[0].segment,
                )
                return
            if attempt:
                self._consumer.resume(*self._consumer.paused())
                logger.info("dependencies are back; %d transactions scored", len(batch))
            return

    async def _wait(self, seconds: float) -> None:
        """Wait before a retry while polling paused partitions, so the group keeps us.

        A partition assigned meanwhile (a rebalance) may answer before it is paused; it is
        rewound so nothing is skipped.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            if self._stop.is_set():
                raise StopRequested
            self._consumer.pause(*self._consumer.assignment())
            polled = await self._consumer.getmany(timeout_ms=max(1, int(min(left, 0.5) * 1000)))
            for tp, records in polled.items():
                if records:
                    self._consumer.seek(tp, records[0].offset)
        if self._stop.is_set():
            raise StopRequested
