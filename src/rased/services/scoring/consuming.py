"""The scoring consumer-group loop: poll, score the poll as one batch, and only then commit.

A poll's offsets are committed once every one of its transactions is stored and announced.
While the model server (without a fallback) or a store is unavailable, the loop pauses its
partitions (it keeps polling, so it stays in the group), waits with backoff and scores the
same batch again; nothing is committed before it is stored. The polling, pausing and
committing are the shared `rased.adapters.kafka.consumer.PollLoop`'s; what is scoring's own
is that the whole poll is one batch (one model request per poll).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError
from prometheus_client import Counter

from rased.adapters.kafka.consumer import PollLoop, Record
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


def decode(record: Record) -> pipeline_pb2.CompiledTransaction | None:
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


class ScoringLoop(PollLoop):
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
        super().__init__("scoring", consumer, backoff, max_records, poll_timeout_ms)
        self._scorer = scorer
        self._clock = clock or asyncio.get_running_loop().time

    async def handle_poll(self, records: Sequence[Record]) -> None:
        """Score the poll's transactions as one batch; skip messages that never can be."""
        received_at = self._clock()
        batch = [c for c in (decode(record) for record in records) if c is not None]
        if batch:
            await self._score_until_stored(batch, received_at)

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
                await self.wait_to_retry(attempt)
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
                self.resume_after_retry()
                logger.info("dependencies are back; %d transactions scored", len(batch))
            return
