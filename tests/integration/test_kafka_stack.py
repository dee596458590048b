"""The local Kafka broker: the pipeline's topics and a produce/consume round trip."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import (
    ConfigResource,
    ConfigResourceType,
)

from rased.adapters.kafka.topics import KafkaTopicSettings, Topic, ensure_topics
from rased.devstack.base import ManagedServer

CHECKED_CONFIGS = ("retention.ms", "compression.type", "max.message.bytes", "min.insync.replicas")


def _unique(label: str) -> str:
    return f"test-{label}-{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="rased-tests")
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def _configs(
    admin: Any, resource_type: Any, name: str, keys: tuple[str, ...]
) -> dict[str, str]:
    """Read config values of one topic or broker back from the cluster."""
    responses = await admin.describe_configs(
        [ConfigResource(resource_type, name, dict.fromkeys(keys))]
    )
    (resource,) = responses[0].to_object()["resources"]
    assert resource["error_code"] == 0, resource
    return {entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]}


async def _partition_counts(admin: Any, names: list[str]) -> dict[str, int]:
    return {
        topic["topic"]: len(topic["partitions"])
        for topic in await admin.describe_topics(names)
        if topic["error_code"] == 0
    }


async def test_ensure_topics_creates_the_pipeline_topics_once(kafka_server: ManagedServer) -> None:
    """The four topics appear with their partitions and configs; a second run creates none."""
    bootstrap = kafka_server.endpoint()
    settings = KafkaTopicSettings(
        prefix=_unique("topics") + "-",
        data_persistence_partitions=6,
        rejected_events_retention=timedelta(days=45),
    )
    names = [settings.topic_name(topic) for topic in Topic]
    try:
        async with asyncio.timeout(30):
            created = await ensure_topics(bootstrap, settings)
            assert created == sorted(names)

            async with _admin(bootstrap) as admin:
                assert await _partition_counts(admin, names) == {
                    spec.name: spec.partitions for spec in settings.specs()
                }
                for spec in settings.specs():
                    read_back = await _configs(
                        admin, ConfigResourceType.TOPIC, spec.name, CHECKED_CONFIGS
                    )
                    assert read_back == {key: spec.configs[key] for key in CHECKED_CONFIGS}
                rejected = await _configs(
                    admin,
                    ConfigResourceType.TOPIC,
                    settings.topic_name(Topic.REJECTED_EVENTS),
                    ("retention.ms",),
                )
                assert rejected == {"retention.ms": str(45 * 24 * 3600 * 1000)}
                # The broker must accept what the topics allow.
                broker = await _configs(
                    admin, ConfigResourceType.BROKER, "1", ("message.max.bytes",)
                )
                assert int(broker["message.max.bytes"]) >= settings.max_message_bytes

            assert await ensure_topics(bootstrap, settings) == []

            more = settings.model_copy(update={"ai_processing_partitions": 15})
            assert await ensure_topics(bootstrap, more) == []
            async with _admin(bootstrap) as admin:
                counts = await _partition_counts(admin, names)
            assert counts[settings.topic_name(Topic.AI_PROCESSING)] == 15
            assert counts[settings.topic_name(Topic.CLIENT_NOTIFICATION)] == 12
    finally:
        async with _admin(bootstrap) as admin:
            await admin.delete_topics(names)


async def test_produce_consume_round_trip(kafka_server: ManagedServer) -> None:
    """What an idempotent acks=all producer sends is read back exactly, headers included."""
    bootstrap = kafka_server.endpoint()
    settings = KafkaTopicSettings()
    topic = _unique("roundtrip")
    sent: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = [
        (
            f"org-1:txn-{n % 4}".encode(),
            f"payload {n}".encode() * (n + 1),
            [("content-type", b"application/x-protobuf"), ("correlation-id", str(n).encode())],
        )
        for n in range(20)
    ]
    # One compiled transaction close to the size limit: Kafka's default limit (1 MiB) refuses it.
    sent.append((b"org-1:txn-big", os.urandom(3 * 1024 * 1024), [("schema", b"rased.v1.Big")]))

    async with _admin(bootstrap) as admin:
        response = await admin.create_topics(
            [NewTopic(topic, 3, 1, topic_configs=settings.topic_configs(timedelta(hours=1)))]
        )
        assert response.to_object()["topic_errors"][0]["error_code"] == 0
    try:
        async with asyncio.timeout(30):
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                acks="all",
                enable_idempotence=True,
                compression_type=settings.compression_type,
                max_request_size=settings.max_message_bytes,
            )
            await producer.start()
            try:
                for key, value, headers in sent:
                    await producer.send_and_wait(topic, value, key=key, headers=headers)
            finally:
                await producer.stop()

            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=bootstrap,
                group_id=_unique("group"),
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                max_partition_fetch_bytes=settings.max_message_bytes,
            )
            await consumer.start()
            received: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
            try:
                while len(received) < len(sent):
                    batches = await consumer.getmany(timeout_ms=1000)
                    for records in batches.values():
                        received.extend((r.key, r.value, list(r.headers)) for r in records)
                await asyncio.sleep(0.5)  # anything beyond what was sent would show up now
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    received.extend((r.key, r.value, list(r.headers)) for r in records)
            finally:
                await consumer.stop()
    finally:
        async with _admin(bootstrap) as admin:
            await admin.delete_topics([topic])

    assert sorted(received) == sorted(sent)
    # One key lands in one partition, so each key's messages come back in the order sent.
    for key in {key for key, _, _ in sent}:
        assert [m for m in received if m[0] == key] == [m for m in sent if m[0] == key]
