"""End to end through the REST edge, as the Web SDK and a client's backend use Rased.

The services run as `make up` runs them (their console scripts, the stack's settings): an
operator creates an organization, the client's backend mints a session and registers a
webhook, the SDK posts batches until the trigger, and the backend reads the scored result
and receives the signed notification.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from rased.devstack import orchestrator
from rased.devstack.base import ManagedServer
from rased.devstack.dev_secrets import load_dev_secrets
from rased.devstack.services import RasedService, load_services
from rased.devstack.settings import StackSettings


def _progress(message: str) -> None:
    print(f"[e2e] {message}", flush=True)


@pytest.fixture(scope="module")
def services(
    stack_settings: StackSettings,
    redis_server: ManagedServer,
    postgres_server: ManagedServer,
    kafka_server: ManagedServer,
    cassandra_server: ManagedServer,
    triton_server: ManagedServer,
) -> Iterator[list[RasedService]]:
    """Every Rased service and the REST edge, started as `make up` starts them."""
    servers = [redis_server, postgres_server, kafka_server, cassandra_server, triton_server]
    asyncio.run(orchestrator.migrate(stack_settings, servers, _progress))
    running = load_services(stack_settings)
    started: list[RasedService] = []
    for service in running:
        try:
            asyncio.run(asyncio.wait_for(service.probe(), timeout=5))
        except Exception:  # noqa: BLE001 - not answering: this test starts it
            service.install(_progress)
            service.start(_progress)
            started.append(service)
    for service in started:
        asyncio.run(service.wait_ready(_progress))
    yield running
    for service in reversed(started):
        service.stop(_progress)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, asyncio.Queue[tuple[bytes, dict[str, str]]]]]:
    """A client backend's webhook endpoint on loopback."""
    received: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/rased", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hooks/rased", received
    await runner.cleanup()


async def _call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    credential: str,
    body: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"authorization": f"Bearer {credential}"}
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_a_transaction_from_sdk_to_scored_result_and_webhook(
    services: list[RasedService],
    stack_settings: StackSettings,
    receiver: tuple[str, asyncio.Queue[tuple[bytes, dict[str, str]]]],
) -> None:
    edge = f"http://{stack_settings.host}:{stack_settings.gateway_port}"
    operator = load_dev_secrets(stack_settings).operator_token
    hook_url, received = receiver
    tag = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession() as http:
        status, created = await _call(
            http,
            "POST",
            f"{edge}/v1/organizations",
            operator,
            {"name": f"e2e-{tag}", "allowPrivateWebhookTargets": True},
        )
        assert status == 200, created
        org = created["organization"]["organizationId"]
        secret = created["secretKey"]["secret"]

        status, endpoint = await _call(
            http,
            "POST",
            f"{edge}/v1/organizations/{org}/webhook-endpoints",
            secret,
            {"url": hook_url, "includeScores": True},
        )
        assert status == 200, endpoint
        signing_secret = endpoint["secret"]

        status, session = await _call(
            http, "POST", f"{edge}/v1/sessions", secret, {"sessionId": f"s-{tag}"}
        )
        assert status == 200, session
        token = session["token"]

        txn = f"txn-{tag}"
        for number in range(4):
            events = [
                {
                    "timestampMs": str(1_764_000_000_000 + number * 1000 + i * 16),
                    "pointer": {
                        "action": "POINTER_ACTION_MOVE",
                        "x": 100 + (number * 40 + i) * 5,
                        "y": 200 + (number * 40 + i) * 5,
                    },
                }
                for i in range(40)
            ]
            status, reply = await _call(
                http,
                "POST",
                f"{edge}/v1/event",
                token,
                {
                    "batch": {
                        "batchId": f"{txn}-b{number}",
                        "sessionId": f"s-{tag}",
                        "transactionId": txn,
                        "clientSentAtMs": "1764000009000",
                        "trigger": number == 3,
                        "events": events,
                    }
                },
            )
            assert status == 200, reply
        assert reply["disposition"] == "BATCH_DISPOSITION_FLUSHED"

        result: dict[str, Any] = {}
        async with asyncio.timeout(60):
            while result.get("status") != "RESULT_STATUS_SCORED":
                status, result = await _call(http, "GET", f"{edge}/v1/results/{txn}", secret)
                assert status == 200, result
                assert result["status"] in ("RESULT_STATUS_SCORING", "RESULT_STATUS_SCORED")
                await asyncio.sleep(0.3)
        scored = result["result"]
        assert scored["transactionId"] == txn
        # A perfectly straight, constant-speed trajectory is automation.
        assert scored["scores"]["botDetection"] > 0.9
        assert scored["riskLevel"] in ("RISK_LEVEL_HIGH", "RISK_LEVEL_CRITICAL")
        assert scored["reasonCodes"]

        # Another organization's key sees nothing of it, exactly as if it did not exist.
        status, stranger = await _call(
            http, "POST", f"{edge}/v1/organizations", operator, {"name": f"other-{tag}"}
        )
        assert status == 200, stranger
        status, hidden = await _call(
            http, "GET", f"{edge}/v1/results/{txn}", stranger["secretKey"]["secret"]
        )
        assert status == 404, hidden
        status, missing = await _call(http, "GET", f"{edge}/v1/results/no-such-{tag}", secret)
        assert (status, missing["message"]) == (404, hidden["message"])

    async with asyncio.timeout(60):
        body, headers = await received.get()
    payload = Webhook(signing_secret).verify(body, headers)
    assert json.loads(body) == payload
    assert payload["data"]["transaction_id"] == txn
    assert "RISK_LEVEL_" + payload["data"]["risk_level"] == scored["riskLevel"]
