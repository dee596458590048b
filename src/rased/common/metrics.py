"""Prometheus metrics shared by every service, and the /metrics endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

GRPC_STARTED = Counter(
    "rased_grpc_server_started_total", "gRPC calls started.", ["grpc_service", "grpc_method"]
)
GRPC_HANDLED = Counter(
    "rased_grpc_server_handled_total",
    "gRPC calls completed, by status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "rased_grpc_server_handling_seconds",
    "Time to handle a gRPC call.",
    ["grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def serve_metrics(host: str, port: int) -> int:
    """Serve /metrics on a background thread; return the bound port."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
