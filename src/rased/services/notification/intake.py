"""From `client_notification` to deliveries: one per endpoint that takes the event type."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from google.protobuf.message import DecodeError

from rased.adapters.kafka.consumer import Record, Unprocessable
from rased.adapters.postgres.webhook_deliveries import NewDelivery, WebhookDeliveryStore
from rased.services.notification.payload import body
from rased.services.notification.scheduling import RetrySchedule
from rased.v1 import pipeline_pb2

DEFAULT_EVENT_TYPE = "transaction.scored"


class DeliveryIntake:
    """Creates the deliveries of each notification (idempotently), then wakes the scheduler."""

    def __init__(
        self,
        deliveries: WebhookDeliveryStore,
        schedule: RetrySchedule,
        on_created: Callable[[], None] = lambda: None,
    ) -> None:
        self._deliveries = deliveries
        self._schedule = schedule
        self._on_created = on_created

    async def handle(self, record: Record) -> None:
        """Create the deliveries of one message; raise Unprocessable for a message never valid."""
        try:
            notification = pipeline_pb2.ResultNotification.FromString(record.value or b"")
        except DecodeError as exc:
            raise Unprocessable(f"not a ResultNotification: {exc}") from exc
        result = notification.result
        try:
            uuid.UUID(result.organization_id)
        except ValueError as exc:
            raise Unprocessable("notification without a valid organization id") from exc
        if not result.transaction_id:
            raise Unprocessable("notification without a transaction id")
        event_type = notification.event_type or DEFAULT_EVENT_TYPE
        endpoints = await self._deliveries.endpoints_for(result.organization_id, event_type)
        created = await self._deliveries.create(
            result.organization_id,
            event_type,
            result.transaction_id,
            result.segment,
            result.session_id,
            [NewDelivery(endpoint, body(notification, scores)) for endpoint, scores in endpoints],
            self._schedule.first_wait(),
        )
        if created:
            self._on_created()
