"""What operators see: JSON log lines with the correlation id, and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections.abc import Sequence
from datetime import timedelta

import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rased.common.correlation import set_correlation_id
from rased.common.logging import configure_logging
from rased.common.server import GrpcServer
from rased.common.settings import ServiceSettings


def test_log_lines_are_json_with_the_correlation_id(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("ingestion", "INFO")
        set_correlation_id("corr-42")
        logging.getLogger("rased.test").info("flushed %d batches", 4, extra={"org": "org-1"})
        set_correlation_id(None)
        line = capsys.readouterr().out.strip().splitlines()[-1]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    record = json.loads(line)
    assert record["message"] == "flushed 4 batches"
    assert record["level"] == "INFO"
    assert record["service"] == "ingestion"
    assert record["correlation_id"] == "corr-42"
    assert record["org"] == "org-1"


async def test_metrics_count_calls_by_method_and_code() -> None:
    def register(server: aio.Server) -> Sequence[str]:
        return []

    settings = ServiceSettings(
        grpc_port=0, metrics_port=0, shutdown_drain=timedelta(0), shutdown_grace=timedelta(1)
    )
    server = GrpcServer(settings, register)
    port = await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(3):
                await stub.Check(health_pb2.HealthCheckRequest())
            with pytest.raises(aio.AioRpcError):
                await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert server.metrics_port is not None
        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
    finally:
        await server.shutdown()
    ok = (
        'rased_grpc_server_handled_total{grpc_code="OK",grpc_method="Check",'
        'grpc_service="grpc.health.v1.Health"}'
    )
    missing = ok.replace('"OK"', '"NOT_FOUND"')
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("rased_grpc_server_handled_total{")
    }
    assert values[ok] >= 3
    assert values[missing] >= 1
