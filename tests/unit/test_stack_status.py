"""`make status` reports a failed probe on one readable line."""

from __future__ import annotations

import socket

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rased.devstack.orchestrator import describe_failure


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_grpc_failure_is_one_line_with_its_status_code() -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{_closed_port()}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.aio.AioRpcError as exc:
            detail = describe_failure(exc)
        else:
            raise AssertionError("a closed port answered a health check")
    assert detail.startswith(("UNAVAILABLE: ", "DEADLINE_EXCEEDED: "))
    assert "\n" not in detail
    assert len(detail) <= 160


def test_other_failures_name_their_type() -> None:
    detail = describe_failure(ConnectionRefusedError(111, "Connection\n refused"))
    assert detail == "ConnectionRefusedError: [Errno 111] Connection refused"
