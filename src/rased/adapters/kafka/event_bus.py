"""Publishing pipeline messages to Kafka with an idempotent producer that waits for acks=all."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from opentelemetry import propagate, trace

from rased.adapters.kafka.topics import KafkaTopicSettings, Topic
from rased.common.correlation import current_correlation_id, new_correlation_id
from rased.common.errors import DependencyUnavailable
from rased.v1 import pipeline_pb2

CONTENT_TYPE = b"application/x-protobuf"
COMPILED_SCHEMA = pipeline_pb2.CompiledTransaction.DESCRIPTOR.full_name.encode()
REJECTED_SCHEMA = pipeline_pb2.RejectedBatch.DESCRIPTOR.full_name.encode()
NOTIFICATION_SCHEMA = pipeline_pb2.ResultNotification.DESCRIPTOR.full_name.encode()
# Set on a compiled transaction re-published by crash recovery (its value is byte-identical
# to the first attempt, which may or may not have reached Kafka).
REDELIVERY_HEADER = "rased-redelivery"
CORRELATION_HEADER = "correlation-id"

_tracer = trace.get_tracer(__name__)


class KafkaEventBus:
    """Sends compiled transactions to ai_processing and data_persistence, rejections to
    rejected_events and stored results to client_notification; every send returns once the
    broker acknowledged it (acks=all)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: KafkaTopicSettings,
        client_id: str = "rased-ingestion",
        request_timeout_ms: int = 15_000,
        linger_ms: int = 0,
    ) -> None:
        self._topics = topics
        self._ai_processing = topics.topic_name(Topic.AI_PROCESSING)
        self._data_persistence = topics.topic_name(Topic.DATA_PERSISTENCE)
        self._rejected = topics.topic_name(Topic.REJECTED_EVENTS)
        self._client_notification = topics.topic_name(Topic.CLIENT_NOTIFICATION)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=topics.compression_type,
            max_request_size=topics.max_message_bytes,
            request_timeout_ms=request_timeout_ms,
            linger_ms=linger_ms,
        )
        self._started = False
        self._closed = False

    async def start(self) -> None:
        """Connect to the cluster (fetches metadata; the topics must exist)."""
        if not self._started:
            await self._producer.start()
            self._started = True

    async def close(self) -> None:
        """Flush what is in flight and disconnect; safe to call twice."""
        if self._started and not self._closed:
            self._closed = True
            await self._producer.stop()

    def _headers(self, schema: bytes, extra: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        correlation = current_correlation_id() or new_correlation_id()
        headers = [
            ("content-type", CONTENT_TYPE),
            ("schema", schema),
            (CORRELATION_HEADER, correlation.encode()),
        ]
        headers.extend((name, value.encode()) for name, value in carrier.items())
        headers.extend(extra)
        return headers

    async def publish_compiled(
        self, compiled: pipeline_pb2.CompiledTransaction, *, redelivery: bool = False
    ) -> None:
        """Publish one compiled transaction to ai_processing and data_persistence.

        Raises:
            DependencyUnavailable: Kafka did not acknowledge both.
        """
        await self.publish_compiled_payload(
            compiled.organization_id,
            compiled.transaction_id,
            compiled.SerializeToString(deterministic=True),
            redelivery=redelivery,
        )

    async def publish_compiled_payload(
        self,
        organization_id: str,
        transaction_id: str,
        payload: bytes,
        *,
        redelivery: bool = False,
    ) -> None:
        """Publish a serialized CompiledTransaction to both topics; return after both acks.

        Keyed ``<org>:<txn>`` so one transaction's segments stay in one partition, in order.
        """
        key = f"{organization_id}:{transaction_id}".encode()
        with _tracer.start_as_current_span(
            "publish rased.v1.CompiledTransaction",
            kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "rased.organization_id": organization_id},
        ):
            extra = [(REDELIVERY_HEADER, b"recovery")] if redelivery else []
            headers = self._headers(COMPILED_SCHEMA, extra)
            try:
                acks: list[asyncio.Future[Any]] = [
                    await self._producer.send(topic, payload, key=key, headers=headers)
                    for topic in (self._ai_processing, self._data_persistence)
                ]
                await asyncio.gather(*acks)
            except KafkaError as exc:
                raise DependencyUnavailable("the event bus (Kafka) is unavailable") from exc

    async def publish_rejected(self, rejected: pipeline_pb2.RejectedBatch) -> None:
        """Publish one rejection to rejected_events; return after the ack (acks=all)."""
        key = f"{rejected.organization_id}:{rejected.transaction_id}".encode()
        with _tracer.start_as_current_span(
            "publish rased.v1.RejectedBatch",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "rased.organization_id": rejected.organization_id,
            },
        ):
            try:
                ack = await self._producer.send(
                    self._rejected,
                    rejected.SerializeToString(),
                    key=key,
                    headers=self._headers(REJECTED_SCHEMA, []),
                )
                await ack
            except KafkaError as exc:
                raise DependencyUnavailable("the event bus (Kafka) is unavailable") from exc

    async def publish_notification(self, notification: pipeline_pb2.ResultNotification) -> None:
        """Publish a stored result to client_notification, keyed `<org>:<txn>`; wait for the ack."""
        result = notification.result
        key = f"{result.organization_id}:{result.transaction_id}".encode()
        with _tracer.start_as_current_span(
            "publish rased.v1.ResultNotification",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "rased.organization_id": result.organization_id,
            },
        ):
            try:
                ack = await self._producer.send(
                    self._client_notification,
                    notification.SerializeToString(deterministic=True),
                    key=key,
                    headers=self._headers(NOTIFICATION_SCHEMA, []),
                )
                await ack
            except KafkaError as exc:
                raise DependencyUnavailable("the event bus (Kafka) is unavailable") from exc
