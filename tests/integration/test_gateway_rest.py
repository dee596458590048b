"""The public REST surface, as the SDK and a client backend use it, through the local edge."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from pydantic import SecretStr

from rased.adapters.kafka.topics import KafkaTopicSettings, ensure_topics
from rased.adapters.postgres.keys import ApiKeyKind, ApiKeyStore, OrganizationStore
from rased.common.crypto import generate_key, key_spec_entry
from rased.devstack.base import ManagedServer
from rased.devstack.postgres import PostgresServer
from rased.gateway.app import build_app
from rased.gateway.settings import GatewaySettings
from rased.migrations.postgres import apply_postgres_migrations
from rased.services.ingestion.main import build_server
from rased.services.ingestion.settings import IngestionSettings

SDK_ORIGIN = "https://shop.example"
MAX_BODY = 256 * 1024


@dataclass
class Edge:
    """The REST edge in front of a fresh ingestion server, and a tenant's keys."""

    base: str
    http: aiohttp.ClientSession
    secret_key: str
    publishable_key: str

    async def call(
        self, method: str, path: str, body: Any = None, credential: str | None = None, **kw: Any
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        headers = dict(kw.pop("headers", {}))
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
        data = kw.pop("data", None)
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, self.base + path, data=data, headers=headers, **kw
        ) as response:
            text = await response.text()
            assert response.content_type == "application/json" or not text, text
            return response.status, json.loads(text) if text else None, response.headers

    async def token(self, session_id: str) -> str:
        status, reply, _ = await self.call(
            "POST", "/v1/sessions", {"sessionId": session_id, "userId": "user-7"}, self.secret_key
        )
        assert status == 200, reply
        token: str = reply["token"]
        return token


@pytest.fixture
async def edge(
    postgres_server: ManagedServer, redis_server: ManagedServer, kafka_server: ManagedServer
) -> AsyncIterator[Edge]:
    assert isinstance(postgres_server, PostgresServer)
    await postgres_server.bootstrap()
    await apply_postgres_migrations(postgres_server.dsn())
    stack = postgres_server.settings
    bootstrap = f"{stack.host}:{stack.kafka_port}"
    tag = uuid.uuid4().hex[:10]
    topics = KafkaTopicSettings(prefix=f"t{tag}-")
    await ensure_topics(bootstrap, topics)
    pool = await asyncpg.create_pool(postgres_server.dsn(), min_size=1, max_size=2)
    org = await OrganizationStore(pool).create(f"bank-{tag}")
    keys = ApiKeyStore(pool)
    _, secret = await keys.create(org, ApiKeyKind.SECRET)
    _, publishable = await keys.create(org, ApiKeyKind.PUBLISHABLE, allowed_origins=[SDK_ORIGIN])
    await pool.close()

    ingestion = await build_server(
        IngestionSettings(
            grpc_port=0,
            redis_url=f"redis://{stack.host}:{stack.redis_port}/0",
            redis_key_prefix=f"t{tag}:",
            postgres_dsn=postgres_server.dsn(),
            kafka_bootstrap_servers=bootstrap,
            session_token_secret=SecretStr("g" * 40),
            master_keys=SecretStr(key_spec_entry("test-1", generate_key())),
            max_batch_bytes=64 * 1024,
            rate_limit_per_session="10/minute",
            shutdown_drain=timedelta(0),
        ),
        topics,
    )
    grpc_port = await ingestion.start()
    target = f"127.0.0.1:{grpc_port}"
    settings = GatewaySettings(
        http_port=0,
        upstreams={"rased.v1.IngestService": target, "rased.v1.SessionService": target},
        max_body_bytes=MAX_BODY,
        cors_allowed_origins=[SDK_ORIGIN],
    )
    runner = web.AppRunner(build_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        yield Edge(f"http://127.0.0.1:{port}", http, secret, publishable)
    await runner.cleanup()
    await ingestion.shutdown()


def _batch(batch_id: str, txn: str, session: str, trigger: bool = False) -> dict[str, Any]:
    return {
        "batch": {
            "batchId": batch_id,
            "sessionId": session,
            "transactionId": txn,
            "clientSentAtMs": "1764000000000",
            "trigger": trigger,
            "events": [
                {
                    "timestampMs": str(1_764_000_000_000 + i),
                    "pointer": {"action": "POINTER_ACTION_MOVE", "x": i, "y": 2 * i},
                }
                for i in range(5)
            ],
        }
    }


async def test_a_session_then_batches_until_a_trigger_flushes(edge: Edge) -> None:
    token = await edge.token("sess-rest")
    status, first, headers = await edge.call(
        "POST",
        "/v1/event",
        _batch("rest-0001", "txn-rest", "sess-rest"),
        token,
        headers={"X-Correlation-Id": "corr-rest-1"},
    )
    assert status == 200, first
    assert first["disposition"] == "BATCH_DISPOSITION_BUFFERED"
    assert headers["X-Correlation-Id"] == "corr-rest-1"
    status, last, _ = await edge.call(
        "POST", "/v1/event", _batch("rest-0002", "txn-rest", "sess-rest", trigger=True), token
    )
    assert status == 200, last
    assert last["disposition"] == "BATCH_DISPOSITION_FLUSHED"
    assert last["flushReason"] == "FLUSH_REASON_TRIGGER"
    assert last["transactionId"] == "txn-rest"


async def test_the_sdk_ingests_from_its_origin_with_a_publishable_key(edge: Edge) -> None:
    status, _, headers = await edge.call(
        "OPTIONS",
        "/v1/event",
        headers={
            "Origin": SDK_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == SDK_ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "authorization" in headers["Access-Control-Allow-Headers"]
    status, reply, headers = await edge.call(
        "POST",
        "/v1/event",
        _batch("sdk-0001", "txn-sdk", "sess-sdk"),
        edge.publishable_key,
        headers={"Origin": SDK_ORIGIN},
    )
    assert status == 200, reply
    assert headers["Access-Control-Allow-Origin"] == SDK_ORIGIN
    status, reply, headers = await edge.call(
        "OPTIONS", "/v1/event", headers={"Origin": "https://evil.example"}
    )
    assert status == 403
    assert "Access-Control-Allow-Origin" not in headers
    # The origin travels to the upstream: a publishable key from elsewhere is refused.
    status, reply, _ = await edge.call(
        "POST",
        "/v1/event",
        _batch("sdk-0002", "txn-sdk", "sess-sdk"),
        edge.publishable_key,
        headers={"Origin": "https://evil.example"},
    )
    assert status == 401, reply


async def test_missing_or_wrong_credentials_are_401(edge: Edge) -> None:
    for credential in (None, "garbage", edge.secret_key):
        status, reply, _ = await edge.call(
            "POST", "/v1/event", _batch("auth-0001", "txn-a", "sess-a"), credential
        )
        assert status == 401, reply
        assert reply["code"] == 16
        assert reply["message"]


async def test_malformed_requests_are_400_with_a_json_error(edge: Edge) -> None:
    token = await edge.token("sess-bad")
    good = _batch("bad-0001", "txn-bad", "sess-bad")
    unknown = json.loads(json.dumps(good))
    unknown["batch"]["colour"] = "red"
    wrong_type = json.loads(json.dumps(good))
    wrong_type["batch"]["trigger"] = "yes please"
    cases: list[dict[str, Any]] = [
        {"data": b'{"batch": {', "headers": {"Content-Type": "application/json"}},
        {"data": b"[1, 2]", "headers": {"Content-Type": "application/json"}},
        {"body": unknown},
        {"body": wrong_type},
    ]
    for case in cases:
        status, reply, _ = await edge.call("POST", "/v1/event", credential=token, **case)
        assert status == 400, (case, reply)
        assert reply["code"] == 3
        assert "Traceback" not in reply["message"]
    # A contract rule (buf.validate) is checked upstream and comes back with its details.
    invalid = json.loads(json.dumps(good))
    invalid["batch"]["transactionId"] = "has spaces"
    status, reply, _ = await edge.call("POST", "/v1/event", invalid, token)
    assert status == 400, reply
    violations = reply["details"][0]["fieldViolations"]
    assert [v["field"] for v in violations] == ["transaction_id"]
    assert reply["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"


async def test_oversized_bodies_are_413(edge: Edge) -> None:
    token = await edge.token("sess-big")
    huge = _batch("big-0001", "txn-big", "sess-big")
    huge["batch"]["events"].append(
        {"timestampMs": "1764000000100", "device": {"userAgent": "u" * (MAX_BODY + 10)}}
    )
    status, reply, _ = await edge.call("POST", "/v1/event", huge, token)
    assert status == 413, reply
    assert reply["code"] == 8
    # Under the edge's limit but over ingestion's (64 KiB here): the upstream's
    # PAYLOAD_TOO_LARGE also answers 413.
    big = _batch("big-0002", "txn-big", "sess-big")
    big["batch"]["events"] += [
        {"timestampMs": str(1764000000200 + i), "device": {"userAgent": "u" * 1000}}
        for i in range(100)
    ]
    status, reply, _ = await edge.call("POST", "/v1/event", big, token)
    assert status == 413, reply
    assert reply["details"][0]["reason"] == "PAYLOAD_TOO_LARGE"


async def test_rate_limited_calls_are_429_with_retry_after(edge: Edge) -> None:
    token = await edge.token("sess-burst")
    statuses = []
    retry_after = None
    for i in range(13):
        status, _, headers = await edge.call(
            "POST", "/v1/event", _batch(f"burst-{i:04d}", "txn-burst", "sess-burst"), token
        )
        statuses.append(status)
        retry_after = headers.get("Retry-After", retry_after)
    assert statuses[:10] == [200] * 10
    assert set(statuses[10:]) == {429}
    assert retry_after is not None and int(retry_after) >= 1


async def test_services_not_deployed_are_503_and_unknown_paths_404(edge: Edge) -> None:
    status, reply, _ = await edge.call("GET", "/v1/results/txn-1", credential=edge.secret_key)
    assert status == 503
    assert "ResultsService" in reply["message"]
    status, reply, _ = await edge.call("GET", "/v1/nothing-here")
    assert status == 404
    assert reply["code"] == 5
    status, _, headers = await edge.call("GET", "/v1/event")
    assert status == 405
    assert headers["Allow"] == "POST"


async def test_the_openapi_document_and_health_are_served(edge: Edge) -> None:
    status, document, _ = await edge.call("GET", "/openapi.json")
    assert status == 200
    assert "post" in document["paths"]["/v1/event"]
    status, health, _ = await edge.call("GET", "/health")
    assert status == 200
    assert health["services"]["rased.v1.IngestService"] == "SERVING"
