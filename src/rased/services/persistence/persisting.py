"""The domain of the persistence worker: one compiled transaction into encrypted, expiring rows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from rased.services.persistence.ports import DataKeys, EventStore, RetentionPolicy, SealedEvent
from rased.services.persistence.rows import transaction_rows, ttl_seconds
from rased.v1 import pipeline_pb2

logger = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TransactionPersister:
    """Stores compiled transactions: rows keyed by the message, payloads sealed per org."""

    def __init__(
        self,
        store: EventStore,
        data_keys: DataKeys,
        retention: RetentionPolicy,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._store = store
        self._data_keys = data_keys
        self._retention = retention
        self._clock = clock

    async def persist(self, compiled: pipeline_pb2.CompiledTransaction) -> int:
        """Write every event of one compiled transaction; return how many.

        Raises:
            UnstorableTransaction: the message can never be stored as it is.
            DependencyUnavailable: a store is down; nothing is lost by calling again.
        """
        rows = transaction_rows(compiled)
        keyring = await self._data_keys.keyring(compiled.organization_id)
        ttl = ttl_seconds(await self._retention.retention_days(compiled.organization_id))
        sealed = [
            SealedEvent(
                organization_id=row.organization_id,
                transaction_id=row.transaction_id,
                event_time_ms=row.event_time_ms,
                sequence=row.sequence,
                session_id=row.session_id,
                event_type=row.event_type,
                key_id=keyring.primary_key_id,
                payload=keyring.seal(row.plaintext, row.associated_data()),
            )
            for row in rows.events
        ]
        await self._store.write(sealed, rows.transaction, ttl, self._clock())
        logger.debug(
            "persisted %d events",
            len(sealed),
            extra={
                "organization_id": compiled.organization_id,
                "transaction_id": compiled.transaction_id,
                "segment": compiled.segment,
            },
        )
        return len(sealed)
