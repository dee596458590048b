"""`rased health`: one grpc.health.v1 Check against a server."""

from __future__ import annotations

import sys

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def check(target: str, service: str, wait_seconds: float) -> int:
    """Print the server's health for `service`; return 0 only when it is SERVING."""
    async with aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=wait_seconds
            )
        except aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                print(f"{target}: unknown service {service!r}", file=sys.stderr)
            else:
                print(f"{target}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 2
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target} {service or '(server)'}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
