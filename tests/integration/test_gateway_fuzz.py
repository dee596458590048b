"""Property-based calls over the OpenAPI document find no server error at the REST edge."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, settings
from pydantic import SecretStr

from rased.adapters.kafka.topics import KafkaTopicSettings
from rased.common.crypto import generate_key, key_spec_entry
from rased.devstack.base import ManagedServer
from rased.devstack.postgres import PostgresServer
from rased.gateway.app import build_app
from rased.gateway.openapi import render
from rased.gateway.settings import GatewaySettings
from rased.migrations.postgres import apply_postgres_migrations
from rased.services.ingestion.main import build_server
from rased.services.ingestion.settings import IngestionSettings

schema = schemathesis.openapi.from_dict(json.loads(render()))
DEPLOYED = ("rased.v1.IngestService", "rased.v1.SessionService")


async def _serve(postgres: PostgresServer, ready: threading.Event, out: list[Any]) -> None:
    stack = postgres.settings
    await postgres.bootstrap()
    await apply_postgres_migrations(postgres.dsn())
    tag = uuid.uuid4().hex[:10]
    ingestion = await build_server(
        IngestionSettings(
            grpc_port=0,
            redis_url=f"redis://{stack.host}:{stack.redis_port}/0",
            redis_key_prefix=f"t{tag}:",
            postgres_dsn=postgres.dsn(),
            kafka_bootstrap_servers=f"{stack.host}:{stack.kafka_port}",
            session_token_secret=SecretStr("f" * 40),
            master_keys=SecretStr(key_spec_entry("test-1", generate_key())),
            shutdown_drain=timedelta(0),
        ),
        KafkaTopicSettings(prefix=f"t{tag}-"),
    )
    target = f"127.0.0.1:{await ingestion.start()}"
    gateway = GatewaySettings(http_port=0, upstreams=dict.fromkeys(DEPLOYED, target))
    runner = web.AppRunner(build_app(gateway))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stop = asyncio.Event()
    out += [f"http://127.0.0.1:{runner.addresses[0][1]}", asyncio.get_running_loop(), stop]
    ready.set()
    await stop.wait()
    await runner.cleanup()
    await ingestion.shutdown()


@pytest.fixture(scope="module")
def base_url(
    postgres_server: ManagedServer, redis_server: ManagedServer, kafka_server: ManagedServer
) -> Iterator[str]:
    # The edge runs on its own loop in a thread: schemathesis calls it with blocking requests.
    assert isinstance(postgres_server, PostgresServer)
    ready = threading.Event()
    out: list[Any] = []

    def run() -> None:
        try:
            asyncio.run(_serve(postgres_server, ready, out))
        except BaseException as error:
            out[:] = [error]
            ready.set()
            raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(60), "the edge did not start"
    if isinstance(out[0], BaseException):
        raise out[0]
    url, loop, stop = out
    yield url
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)


@schema.parametrize()
@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: schemathesis.Case[Any], base_url: str) -> None:
    response = case.call(base_url=base_url, headers={"Authorization": "Bearer not-a-key"})
    body = response.json()
    assert set(body) >= ({"code", "message"} if response.status_code != 200 else set()), body
    if response.status_code >= 500:
        service = case.operation.definition.raw["summary"].rsplit(".", 1)[0]
        # Only a service this edge has no upstream for may answer 503, and it says so.
        assert response.status_code == 503, (response.status_code, body)
        assert service not in DEPLOYED and "not deployed" in body["message"], body
