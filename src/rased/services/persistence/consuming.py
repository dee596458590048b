"""What the persistence worker does with each message of its consumer-group loop.

The loop itself is the shared `CommitAfterEffectLoop` (poll, handle every message, commit
only after all are stored, pause and retry while Cassandra is away). A redelivery after a
crash or a rebalance rewrites the same rows (deterministic keys), so at-least-once delivery
stores each event once.
"""

from __future__ import annotations

from typing import Protocol

from aiokafka import AIOKafkaConsumer
from google.protobuf.message import DecodeError
from prometheus_client import Counter

from rased.adapters.kafka.consumer import CommitAfterEffectLoop, Record, Unprocessable
from rased.common.backoff import Backoff
from rased.services.persistence.rows import UnstorableTransaction
from rased.v1 import pipeline_pb2

EVENTS_WRITTEN = Counter("rased_persistence_events_written_total", "Event rows written.")

LOOP_NAME = "persistence"


class Persister(Protocol):
    """What the loop hands each compiled transaction to."""

    async def persist(self, compiled: pipeline_pb2.CompiledTransaction) -> int:
        """Store one compiled transaction; return the number of events."""
        ...


class PersistHandler:
    """Decodes one `data_persistence` message and stores its events."""

    def __init__(self, persister: Persister) -> None:
        self._persister = persister

    async def __call__(self, record: Record) -> None:
        """Store the message's compiled transaction; Unprocessable if it never can be."""
        try:
            compiled = pipeline_pb2.CompiledTransaction.FromString(record.value or b"")
            written = await self._persister.persist(compiled)
        except (DecodeError, UnstorableTransaction) as exc:
            raise Unprocessable(str(exc) or type(exc).__name__) from exc
        EVENTS_WRITTEN.inc(written)


def persistence_loop(
    consumer: AIOKafkaConsumer, persister: Persister, backoff: Backoff, max_records: int = 200
) -> CommitAfterEffectLoop:
    """Return the worker's loop: every polled message stored before its offset is committed."""
    return CommitAfterEffectLoop(
        LOOP_NAME, consumer, PersistHandler(persister), backoff, max_records=max_records
    )
