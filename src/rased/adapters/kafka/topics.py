"""The Kafka topics of the pipeline, their settings, and their idempotent creation.

Local defaults fit a single broker. Production runs replication factor 3 with
min.insync.replicas=2 (``RASED_KAFKA_TOPICS_REPLICATION_FACTOR=3``,
``RASED_KAFKA_TOPICS_MIN_INSYNC_REPLICAS=2``): a write acknowledged with ``acks=all`` is then
on two brokers at least, and a topic stays writable while one broker is down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal, Self

from aiokafka.admin import (
    AIOKafkaAdminClient,
    NewPartitions,
    NewTopic,
)
from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    for_code,
)
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024

# Kafka protocol error codes that ensure_topics handles itself.
_NO_ERROR = 0
_UNKNOWN_TOPIC_OR_PARTITION = 3
_TOPIC_ALREADY_EXISTS = 36
# How long ensure_topics waits for the broker's metadata to show what it created.
_VISIBLE_TIMEOUT_S = 15.0


class Topic(StrEnum):
    """Names of the topics the services produce to and consume from."""

    AI_PROCESSING = "ai_processing"
    """Compiled transactions for the scoring worker."""
    DATA_PERSISTENCE = "data_persistence"
    """Compiled transactions for the persistence worker (Cassandra)."""
    CLIENT_NOTIFICATION = "client_notification"
    """Scored results for the notification worker (webhooks)."""
    REJECTED_EVENTS = "rejected_events"
    """Authenticated batches that failed validation, with the reason."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic as it must exist: partitions, replication and topic-level configs."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


def _days(days: int) -> timedelta:
    return timedelta(days=days)


class KafkaTopicSettings(BaseSettings):
    """Partitions, retention and limits of the pipeline's topics."""

    model_config = SettingsConfigDict(env_prefix="RASED_KAFKA_TOPICS_", extra="forbid")

    prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description=(
            "Prefix of every topic name: empty normally; an environment name on a shared "
            "cluster, or a fresh namespace per integration test."
        ),
    )
    ai_processing_partitions: int = Field(
        default=12,
        ge=1,
        description="Partitions of ai_processing: the most scoring workers that share the load.",
    )
    data_persistence_partitions: int = Field(
        default=12,
        ge=1,
        description="Partitions of data_persistence: the most persistence workers in parallel.",
    )
    client_notification_partitions: int = Field(
        default=12,
        ge=1,
        description="Partitions of client_notification: the most notification workers.",
    )
    rejected_events_partitions: int = Field(
        default=3,
        ge=1,
        description="Partitions of rejected_events (low volume, read for audits).",
    )
    ai_processing_retention: timedelta = Field(
        default_factory=lambda: _days(7),
        description="How long ai_processing keeps messages (room to replay after an outage).",
    )
    data_persistence_retention: timedelta = Field(
        default_factory=lambda: _days(7),
        description="How long data_persistence keeps messages (room to replay into Cassandra).",
    )
    client_notification_retention: timedelta = Field(
        default_factory=lambda: _days(7),
        description="How long client_notification keeps messages.",
    )
    rejected_events_retention: timedelta = Field(
        default_factory=lambda: _days(30),
        description="How long rejected_events keeps messages (kept longer for support cases).",
    )
    compression_type: Literal["zstd", "lz4"] = Field(
        default="zstd",
        description="compression.type of every topic; producers should compress the same way.",
    )
    max_message_bytes: int = Field(
        default=4 * MIB,
        ge=1024,
        description=(
            "max.message.bytes of every topic (one compiled transaction must fit); the "
            "brokers' message.max.bytes must allow it and producers' max_request_size match it."
        ),
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        description="Replicas of every partition: 1 on the local single broker, 3 in production.",
    )
    min_insync_replicas: int = Field(
        default=1,
        ge=1,
        description="min.insync.replicas of every topic: 1 locally, 2 in production.",
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) cannot exceed "
                f"replication_factor ({self.replication_factor}): no write could succeed"
            )
        for topic in Topic:
            if getattr(self, f"{topic.value}_retention") <= timedelta(0):
                raise ValueError(f"{topic.value}_retention must be positive")
        return self

    def topic_configs(self, retention: timedelta) -> dict[str, str]:
        """Return the topic-level configs shared by every topic, with this retention."""
        return {
            "cleanup.policy": "delete",
            "retention.ms": str(int(retention.total_seconds() * 1000)),
            "compression.type": self.compression_type,
            "max.message.bytes": str(self.max_message_bytes),
            "min.insync.replicas": str(self.min_insync_replicas),
        }

    def topic_name(self, topic: Topic) -> str:
        """Return the name of this topic on the cluster (with the prefix)."""
        return f"{self.prefix}{topic.value}"

    def specs(self) -> list[TopicSpec]:
        """Return every topic of the pipeline as it must exist."""
        return [
            TopicSpec(
                name=self.topic_name(topic),
                partitions=getattr(self, f"{topic.value}_partitions"),
                replication_factor=self.replication_factor,
                configs=self.topic_configs(getattr(self, f"{topic.value}_retention")),
            )
            for topic in Topic
        ]


def _raise_for(error_code: int, message: str | None, what: str) -> None:
    """Raise the aiokafka error for a non-zero Kafka error code."""
    error_cls = for_code(error_code)
    raise error_cls(f"{what}: {message or error_cls.__name__}")


async def _wait_until_visible(admin: Any, specs: dict[str, TopicSpec]) -> None:
    """Wait until the broker's metadata shows every topic with all its partitions.

    The controller answers once a change is committed; brokers apply it a moment later, and a
    client started right away must not see a topic missing or short of partitions.
    """
    deadline = asyncio.get_running_loop().time() + _VISIBLE_TIMEOUT_S
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(list(specs))
        short = [
            topic["topic"]
            for topic in described
            if topic["error_code"] != _NO_ERROR
            or len(topic["partitions"]) < specs[topic["topic"]].partitions
            or any(p["leader"] < 0 for p in topic["partitions"])
        ]
        if not short:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise KafkaTimeoutError(f"topics not ready after {_VISIBLE_TIMEOUT_S} s: {short}")
        await asyncio.sleep(0.1)


async def ensure_topics(bootstrap_servers: str, settings: KafkaTopicSettings) -> list[str]:
    """Create the missing topics and add missing partitions; return the names created.

    Existing topics keep their configs; only a partition count below the configured one is
    raised (Kafka cannot lower it). Safe to run from several processes at once.
    """
    specs = {spec.name: spec for spec in settings.specs()}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="rased-ensure-topics"
    )
    try:
        await admin.start()
        described: list[dict[str, Any]] = await admin.describe_topics(list(specs))
        existing: dict[str, int] = {}
        for topic in described:
            if topic["error_code"] == _NO_ERROR:
                existing[topic["topic"]] = len(topic["partitions"])
            elif topic["error_code"] != _UNKNOWN_TOPIC_OR_PARTITION:
                _raise_for(topic["error_code"], None, f"describe topic {topic['topic']}")

        missing = [spec for name, spec in specs.items() if name not in existing]
        created: list[str] = []
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=spec.replication_factor,
                        topic_configs=spec.configs,
                    )
                    for spec in missing
                ]
            )
            for error in response.to_object()["topic_errors"]:
                code = error["error_code"]
                if code == _NO_ERROR:
                    created.append(error["topic"])
                # TOPIC_ALREADY_EXISTS: another process created it since we looked; fine.
                elif code != _TOPIC_ALREADY_EXISTS:
                    _raise_for(code, error["error_message"], f"create topic {error['topic']}")

        grow = {
            name: NewPartitions(total_count=specs[name].partitions)
            for name, count in existing.items()
            if count < specs[name].partitions
        }
        if grow:
            try:
                await admin.create_partitions(grow)
            except KafkaError:
                # Another process may have raised the count first: fine if it is high enough.
                again: list[dict[str, Any]] = await admin.describe_topics(list(grow))
                if any(len(t["partitions"]) < specs[t["topic"]].partitions for t in again):
                    raise
        await _wait_until_visible(admin, specs)
    finally:
        await admin.close()
    return sorted(created)
