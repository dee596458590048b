"""The notification worker on real Kafka and PostgreSQL, delivering to a real HTTP receiver.

Every test has its own database (so no other worker claims its deliveries), topics (a
prefix) and consumer group; the receiver is an aiohttp server on 127.0.0.1, allowed by the
organization's `allow_private_webhook_targets`. Signatures are checked with the
`standardwebhooks` library, as a client's backend would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from grpc import aio
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from rased.adapters.kafka.topics import KafkaTopicSettings, Topic, ensure_topics
from rased.adapters.postgres.keys import OrganizationStore
from rased.adapters.postgres.webhooks import WebhookEndpointStore
from rased.common.crypto import MasterKeyring, generate_key, key_spec_entry
from rased.common.server import GrpcServer
from rased.devstack.base import ManagedServer
from rased.services.admin.main import build_server as build_admin
from rased.services.admin.settings import AdminSettings
from rased.services.notification.main import build_server
from rased.services.notification.settings import NotificationSettings
from rased.v1 import admin_pb2, admin_pb2_grpc, pipeline_pb2, scoring_pb2

pytestmark = pytest.mark.timeout(60)

MASTER = key_spec_entry("notif-1", generate_key())
OPERATOR = "op-" + uuid.uuid4().hex + uuid.uuid4().hex
FAST = [timedelta(0), timedelta(milliseconds=200), timedelta(milliseconds=200)]


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 15) -> None:
    """Wait until `check` says yes; fail the test after `seconds`."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


@dataclass
class Hit:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A webhook receiver answering scripted statuses per path (then 200), recording hits."""

    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    script: dict[str, deque[tuple[int, dict[str, str]]]] = field(default_factory=dict)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def answer(self, path: str, *answers: int | tuple[int, dict[str, str]]) -> None:
        self.script[path] = deque(a if isinstance(a, tuple) else (a, {}) for a in answers)

    def at(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        loop = asyncio.get_running_loop()
        self.hits.append(Hit(request.path, dict(request.headers), body, loop.time()))
        queue = self.script.get(request.path)
        status, headers = queue.popleft() if queue else (200, {})
        return web.Response(status=status, headers=headers)


@dataclass
class Env:
    """A test's database, organization, topics, receiver and the way to run workers."""

    dsn: str
    pool: asyncpg.Pool
    organization_id: str
    topics: KafkaTopicSettings
    settings: NotificationSettings
    producer: AIOKafkaProducer
    receiver: Receiver
    endpoints: WebhookEndpointStore
    stack: AsyncExitStack

    async def worker(self, **changes: Any) -> GrpcServer:
        server = await build_server(self.settings.model_copy(update=changes), self.topics)
        await server.start()
        self.stack.push_async_callback(server.shutdown)
        return server

    async def publish(
        self, transaction_id: str, organization_id: str | None = None, segment: int = 0
    ) -> None:
        result = scoring_pb2.TransactionResult(
            organization_id=organization_id or self.organization_id,
            session_id="sess-" + transaction_id,
            transaction_id=transaction_id,
            segment=segment,
            scores=scoring_pb2.Scores(bot_detection=0.91, overall_confidence=0.8),
            risk_level=scoring_pb2.RISK_LEVEL_HIGH,
            recommendations=[scoring_pb2.RECOMMENDATION_STEP_UP_AUTH],
            model_version="fraud-ensemble:1",
            user_id="user-secret-42",
        )
        result.scored_at.FromDatetime(datetime.now(UTC))
        message = pipeline_pb2.ResultNotification(event_type="transaction.scored", result=result)
        await self.producer.send_and_wait(
            self.topics.topic_name(Topic.CLIENT_NOTIFICATION),
            message.SerializeToString(),
            key=transaction_id.encode(),
        )

    async def endpoint(self, path: str, org: str | None = None, **options: Any) -> tuple[str, str]:
        record, secret = await self.endpoints.create(
            org or self.organization_id, self.receiver.url(path), **options
        )
        return record.endpoint_id, secret

    async def deliveries(self, endpoint_id: str) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at",
            uuid.UUID(endpoint_id),
        )
        return rows

    async def attempts(self, delivery_id: uuid.UUID) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(
            "SELECT * FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
            delivery_id,
        )
        return rows

    async def wait_status(self, endpoint_id: str, status: str, count: int = 1) -> list[Any]:
        async def reached() -> bool:
            rows = await self.deliveries(endpoint_id)
            return len(rows) >= count and all(r["status"] == status for r in rows)

        await eventually(reached)
        return await self.deliveries(endpoint_id)


@pytest.fixture
async def env(fresh_database: str, kafka_server: ManagedServer) -> AsyncIterator[Env]:
    tag = uuid.uuid4().hex[:10]
    dsn = fresh_database
    stack_settings = kafka_server.settings
    bootstrap = f"{stack_settings.host}:{stack_settings.kafka_port}"
    topics = KafkaTopicSettings(
        prefix=f"n{tag}-",
        ai_processing_partitions=1,
        data_persistence_partitions=1,
        client_notification_partitions=2,
        rejected_events_partitions=1,
    )
    await ensure_topics(bootstrap, topics)
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = runner.addresses[0][1]
    async with AsyncExitStack() as stack:
        stack.push_async_callback(runner.cleanup)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
        stack.push_async_callback(pool.close)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        stack.push_async_callback(producer.stop)
        org = await OrganizationStore(pool).create(f"bank-{tag}")
        await pool.execute(
            "UPDATE organizations SET allow_private_webhook_targets = true WHERE id = $1",
            uuid.UUID(org),
        )
        settings = NotificationSettings(
            grpc_port=0,
            kafka_bootstrap_servers=bootstrap,
            consumer_group=f"notif-{tag}",
            postgres_dsn=dsn,
            master_keys=SecretStr(MASTER),
            retry_schedule=FAST,
            retry_jitter=0,
            request_timeout=timedelta(seconds=2),
            claim_lease=timedelta(seconds=5),
            poll_interval=timedelta(milliseconds=50),
            shutdown_drain=timedelta(0),
            shutdown_grace=timedelta(seconds=3),
        )
        endpoints = WebhookEndpointStore(pool, MasterKeyring.from_spec(MASTER))
        yield Env(dsn, pool, org, topics, settings, producer, receiver, endpoints, stack)


def verified(secret: str, hit: Hit) -> Any:
    """Return the payload after standardwebhooks verified its signature (raises otherwise)."""
    return Webhook(secret).verify(hit.body, hit.headers)


async def test_deliveries_are_signed_per_standard_webhooks(env: Env) -> None:
    with_scores, secret_a = await env.endpoint("/a", include_scores=True)
    without_scores, secret_b = await env.endpoint("/b")
    env.receiver.answer("/a", 204)
    await env.worker()
    txn = f"txn-{uuid.uuid4().hex[:8]}"
    await env.publish(txn)
    await env.publish(txn)  # Kafka redelivers: still one delivery per endpoint and result

    [delivery] = await env.wait_status(with_scores, "succeeded")
    await env.wait_status(without_scores, "succeeded")
    [hit_a], [hit_b] = env.receiver.at("/a"), env.receiver.at("/b")
    payload = verified(secret_a, hit_a)
    assert hit_a.headers["webhook-id"] == str(delivery["delivery_id"])
    assert payload["type"] == "transaction.scored"
    assert payload["data"]["transaction_id"] == txn
    assert payload["data"]["status"] == "completed"
    assert payload["data"]["risk_level"] == "HIGH"
    assert payload["data"]["scores"]["bot_detection"] == pytest.approx(0.91)
    assert payload["data"]["recommendations"] == ["STEP_UP_AUTH"]
    plain = verified(secret_b, hit_b)
    assert plain["data"]["transaction_id"] == txn
    assert "scores" not in plain["data"]
    assert b"user-secret-42" not in hit_a.body + hit_b.body
    with pytest.raises(Exception, match="No matching signature"):
        verified(secret_b, hit_a)  # signed with its own endpoint's secret only

    [attempt] = await env.attempts(delivery["delivery_id"])
    assert (attempt["status_code"], attempt["error"]) == (204, "")
    assert attempt["duration_ms"] >= 0
    await asyncio.sleep(0.3)
    assert len(env.receiver.hits) == 2


async def test_failures_retry_with_one_id_then_dead_letter_and_redeliver(env: Env) -> None:
    endpoint, secret = await env.endpoint("/flaky")
    # 429 asks for 1 s (the schedule says 0.2 s); a redirect is a failure and not followed.
    env.receiver.answer(
        "/flaky",
        (429, {"Retry-After": "1"}),
        (302, {"Location": env.receiver.url("/elsewhere")}),
        500,
    )
    await env.worker()
    await env.publish("txn-flaky")

    [delivery] = await env.wait_status(endpoint, "dead_lettered")
    hits = env.receiver.at("/flaky")
    assert len(hits) == 3
    assert not env.receiver.at("/elsewhere")
    assert {hit.headers["webhook-id"] for hit in hits} == {str(delivery["delivery_id"])}
    for hit in hits:
        verified(secret, hit)
    assert hits[1].at - hits[0].at >= 0.95  # Retry-After honoured
    assert hits[2].at - hits[1].at < 0.95  # back on the schedule
    attempts = await env.attempts(delivery["delivery_id"])
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 429), (2, 302), (3, 500)]
    assert "redirect" in attempts[1]["error"]
    assert delivery["attempts"] == 3
    assert delivery["next_attempt_at"] is None

    admin = await build_admin(
        AdminSettings(
            grpc_port=0,
            postgres_dsn=env.dsn,
            master_keys=SecretStr(MASTER),
            operator_token=SecretStr(OPERATOR),
            shutdown_drain=timedelta(0),
        )
    )
    port = await admin.start()
    env.stack.push_async_callback(admin.shutdown)
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    env.stack.push_async_callback(channel.close)
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    auth = (("authorization", f"Bearer {OPERATOR}"),)
    listed = await stub.ListWebhookDeliveries(
        admin_pb2.ListWebhookDeliveriesRequest(
            organization_id=env.organization_id,
            status=admin_pb2.DELIVERY_STATUS_DEAD_LETTERED,
        ),
        metadata=auth,
    )
    [dead] = listed.deliveries
    assert (dead.delivery_id, dead.transaction_id, dead.attempts) == (
        str(delivery["delivery_id"]),
        "txn-flaky",
        3,
    )
    assert (dead.last_status_code, dead.status) == (500, admin_pb2.DELIVERY_STATUS_DEAD_LETTERED)

    redelivered = await stub.RedeliverWebhook(
        admin_pb2.RedeliverWebhookRequest(
            organization_id=env.organization_id, delivery_id=dead.delivery_id
        ),
        metadata=auth,
    )
    assert redelivered.delivery.status == admin_pb2.DELIVERY_STATUS_PENDING
    [done] = await env.wait_status(endpoint, "succeeded")
    assert done["attempts"] == 4
    last = env.receiver.at("/flaky")[-1]
    assert last.headers["webhook-id"] == dead.delivery_id
    verified(secret, last)


async def test_410_gone_disables_the_endpoint(env: Env) -> None:
    endpoint, _ = await env.endpoint("/gone")
    env.receiver.answer("/gone", 410)
    await env.worker()
    await env.publish("txn-gone-1")

    [delivery] = await env.wait_status(endpoint, "cancelled")
    assert delivery["attempts"] == 1
    [record] = await env.endpoints.list_for_organization(env.organization_id)
    assert (record.enabled, record.disabled_reason) == (False, "410 Gone")
    await env.publish("txn-gone-2")
    await asyncio.sleep(1.0)
    assert len(await env.deliveries(endpoint)) == 1  # a disabled endpoint gets nothing new
    assert len(env.receiver.at("/gone")) == 1


async def test_a_restart_during_the_retry_schedule_loses_nothing(env: Env) -> None:
    endpoint, secret = await env.endpoint("/later")
    env.receiver.answer("/later", 503)
    first = await env.worker(retry_schedule=[timedelta(0), timedelta(seconds=2)])
    await env.publish("txn-1")
    await eventually(lambda: _true(len(env.receiver.at("/later")) == 1))
    await first.shutdown()
    [waiting] = await env.deliveries(endpoint)
    assert waiting["status"] == "pending"
    assert waiting["next_attempt_at"] > datetime.now(UTC)
    await env.publish("txn-2")  # while no worker runs: waits in Kafka

    await env.worker(retry_schedule=[timedelta(0), timedelta(seconds=2)])
    rows = await env.wait_status(endpoint, "succeeded", count=2)
    by_txn = {row["transaction_id"]: row for row in rows}
    assert by_txn["txn-1"]["attempts"] == 2
    assert by_txn["txn-2"]["attempts"] == 1
    hits = env.receiver.at("/later")
    assert [h.headers["webhook-id"] for h in hits].count(str(waiting["delivery_id"])) == 2
    for hit in hits:
        verified(secret, hit)


async def test_several_workers_never_make_the_same_attempt(env: Env) -> None:
    endpoint, _ = await env.endpoint("/many")
    await env.worker()
    await env.worker()
    for n in range(30):
        await env.publish(f"txn-{n}")
    rows = await env.wait_status(endpoint, "succeeded", count=30)
    await asyncio.sleep(0.3)
    ids = [hit.headers["webhook-id"] for hit in env.receiver.at("/many")]
    assert sorted(ids) == sorted(str(row["delivery_id"]) for row in rows)


async def test_an_organization_not_allowed_private_targets_is_refused(env: Env) -> None:
    other = await OrganizationStore(env.pool).create("no-private")
    # The admin API refuses such URLs for this organization; rows made before, or names
    # resolving inward, are caught at delivery time.
    literal, _ = await env.endpoint("/literal", org=other)
    named, _ = await env.endpoints.create(other, env.receiver.url("/named", host="localhost"))
    await env.worker()
    await env.publish("txn-ssrf", organization_id=other)

    for endpoint_id in (literal, named.endpoint_id):
        [delivery] = await env.wait_status(endpoint_id, "dead_lettered")
        attempts = await env.attempts(delivery["delivery_id"])
        assert len(attempts) == len(FAST)
        assert {a["status_code"] for a in attempts} == {0}
        assert all("blocked target" in a["error"] for a in attempts)
        assert all("loopback" in a["error"] for a in attempts)
    assert not env.receiver.hits


async def test_a_secret_rotation_sends_both_signatures(env: Env) -> None:
    endpoint, old = await env.endpoint("/rotated")
    new = await env.endpoints.rotate_secret(
        env.organization_id, endpoint, datetime.now(UTC) + timedelta(hours=1)
    )
    assert new is not None
    await env.worker()
    await env.publish("txn-rot")

    await env.wait_status(endpoint, "succeeded")
    [hit] = env.receiver.at("/rotated")
    signatures = hit.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    assert verified(new, hit) == verified(old, hit)  # either secret verifies
    assert json.loads(hit.body)["data"]["transaction_id"] == "txn-rot"


async def _true(value: bool) -> bool:
    return value
