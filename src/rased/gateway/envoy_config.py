"""Envoy's config for the public edge, generated from the contracts (`gateway/envoy/`).

The transcoder serves the same `google.api.http` routes as the local edge. After transcoding,
Envoy routes the gRPC path (`/rased.v1.IngestService/SubmitBatch`): one route per annotated
method to the cluster of the process serving it (the devstack's service entries, which match
docker-compose's service names). A service that no process serves yet answers 503, as the
local edge does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rased.devstack.services import SERVICE_ENTRIES, ServiceEntry
from rased.gateway.routes import Route, build_routes, contract_services

ROOT = Path(__file__).resolve().parents[3]
OUT_DIR = ROOT / "gateway" / "envoy"
CONFIG_NAME = "envoy.yaml"
DESCRIPTOR_NAME = "rased.binpb"
# Where the compose Envoy mounts gateway/envoy/.
MOUNT = "/etc/envoy"

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
_TYPES = {
    "hcm": _HCM + "HttpConnectionManager",
    "transcoder": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3."
    "GrpcJsonTranscoder",
    "cors": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
    "cors_policy": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
    "router": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
    "stdout": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
    "http_options": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "tls": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
}
_ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "grpc_method": "%REQ(:PATH)%",
    "status": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS%",
    "flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "upstream": "%UPSTREAM_CLUSTER%",
    "correlation_id": "%REQ(X-CORRELATION-ID)%",
    "user_agent": "%REQ(USER-AGENT)%",
}


@dataclass(frozen=True)
class EdgeOptions:
    """What the deployment decides: ports, origins, limits, timeouts, certificates."""

    listen_port: int = 8080
    admin_port: int = 9901
    cors_origins: tuple[str, ...] = ("http://localhost:3000",)
    max_request_bytes: int = 1024 * 1024
    route_timeout_seconds: float = 10.0
    retries: int = 2
    tls_certificate: str | None = None
    tls_private_key: str | None = None
    entries: tuple[ServiceEntry, ...] = field(default=SERVICE_ENTRIES)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _clusters(options: EdgeOptions) -> list[dict[str, Any]]:
    clusters = []
    for entry in options.entries:
        if not entry.grpc_services:
            continue
        clusters.append(
            {
                "name": entry.name,
                "type": "STRICT_DNS",
                "connect_timeout": "2s",
                "lb_policy": "ROUND_ROBIN",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": _TYPES["http_options"],
                        "explicit_http_config": {"http2_protocol_options": {}},
                    }
                },
                "load_assignment": {
                    "cluster_name": entry.name,
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {
                                    "endpoint": {
                                        "address": {
                                            "socket_address": {
                                                "address": entry.name,
                                                "port_value": entry.grpc_port,
                                            }
                                        }
                                    }
                                }
                            ]
                        }
                    ],
                },
                "health_checks": [
                    {
                        "timeout": "1s",
                        "interval": "5s",
                        "unhealthy_threshold": 2,
                        "healthy_threshold": 1,
                        "grpc_health_check": {},
                    }
                ],
                "circuit_breakers": {
                    "thresholds": [{"max_requests": 10000, "max_pending_requests": 10000}]
                },
            }
        )
    return clusters


def _routes(routes: Sequence[Route], options: EdgeOptions) -> list[dict[str, Any]]:
    owner = {s: e.name for e in options.entries for s in e.grpc_services}
    config: list[dict[str, Any]] = []
    seen: set[str] = set()
    for route in sorted(routes, key=lambda r: r.grpc_path):
        if route.grpc_path in seen:
            continue
        seen.add(route.grpc_path)
        match = {"path": route.grpc_path}
        cluster = owner.get(route.service)
        if cluster is None:
            body = '{"code": 14, "message": "' + route.service + ' is not deployed", "details": []}'
            config.append(
                {
                    "match": match,
                    "direct_response": {"status": 503, "body": {"inline_string": body}},
                }
            )
            continue
        config.append(
            {
                "match": match,
                "route": {
                    "cluster": cluster,
                    "timeout": _seconds(options.route_timeout_seconds),
                    "retry_policy": {
                        # Only failures where the upstream did no work are retried.
                        "retry_on": "connect-failure,refused-stream,unavailable",
                        "num_retries": options.retries,
                        "per_try_timeout": _seconds(options.route_timeout_seconds / 2),
                    },
                },
            }
        )
    return config


def _transcoder(services: Sequence[str], options: EdgeOptions) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.grpc_json_transcoder",
        "typed_config": {
            "@type": _TYPES["transcoder"],
            "proto_descriptor": f"{MOUNT}/{DESCRIPTOR_NAME}",
            "services": list(services),
            "print_options": {
                "add_whitespace": False,
                "always_print_primitive_fields": False,
                "always_print_enums_as_ints": False,
                "preserve_proto_field_names": False,
            },
            # The error body is the google.rpc.Status in JSON, as the local edge writes it.
            "convert_grpc_status": True,
            "request_validation_options": {
                "reject_unknown_method": True,
                "reject_unknown_query_parameters": True,
            },
            "max_request_body_size": options.max_request_bytes,
        },
    }


def build_config(routes: Sequence[Route], options: EdgeOptions) -> dict[str, Any]:
    """Return Envoy's bootstrap config as a dict (yaml.safe_dump writes it)."""
    services = sorted({r.service for r in routes})
    cors_policy = {
        "@type": _TYPES["cors_policy"],
        "allow_origin_string_match": [{"exact": origin} for origin in options.cors_origins],
        "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "allow_headers": "authorization, content-type, x-correlation-id",
        "expose_headers": "retry-after, x-correlation-id",
        "max_age": "3600",
    }
    manager = {
        "@type": _TYPES["hcm"],
        "stat_prefix": "public",
        "codec_type": "AUTO",
        "request_timeout": "30s",
        "generate_request_id": True,
        "access_log": [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": _TYPES["stdout"],
                    "log_format": {"json_format": _ACCESS_LOG_FORMAT},
                },
            }
        ],
        "route_config": {
            "name": "rased",
            "virtual_hosts": [
                {
                    "name": "rased",
                    "domains": ["*"],
                    "typed_per_filter_config": {"envoy.filters.http.cors": cors_policy},
                    "routes": _routes(routes, options),
                }
            ],
        },
        "http_filters": [
            {"name": "envoy.filters.http.cors", "typed_config": {"@type": _TYPES["cors"]}},
            _transcoder(services, options),
            {"name": "envoy.filters.http.router", "typed_config": {"@type": _TYPES["router"]}},
        ],
    }
    chain: dict[str, Any] = {
        "filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
        ]
    }
    if options.tls_certificate and options.tls_private_key:
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": _TYPES["tls"],
                "common_tls_context": {
                    "alpn_protocols": ["h2", "http/1.1"],
                    "tls_certificates": [
                        {
                            "certificate_chain": {"filename": options.tls_certificate},
                            "private_key": {"filename": options.tls_private_key},
                        }
                    ],
                },
            },
        }
    return {
        "admin": {
            # Loopback only: the admin interface can stop the server.
            "address": {
                "socket_address": {"address": "127.0.0.1", "port_value": options.admin_port}
            }
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "public",
                    "address": {
                        "socket_address": {"address": "0.0.0.0", "port_value": options.listen_port}
                    },
                    "per_connection_buffer_limit_bytes": options.max_request_bytes,
                    "filter_chains": [chain],
                }
            ],
            "clusters": _clusters(options),
        },
    }


def render(options: EdgeOptions | None = None) -> str:
    """Return the YAML of the config for every annotated method of the contracts."""
    config = build_config(build_routes(contract_services()), options or EdgeOptions())
    header = "# Generated by `python -m rased.gateway.envoy_config` from proto/. Do not edit.\n"
    return header + yaml.safe_dump(config, sort_keys=False, width=100)


def build_descriptor_set(out: Path) -> None:
    """Write the contracts' FileDescriptorSet (with imports) for the transcoder."""
    well_known = resources.files("grpc_tools") / "_proto"
    sources = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={ROOT / 'proto'}",
            f"--proto_path={ROOT / 'third_party' / 'proto'}",
            f"--proto_path={well_known}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *sources,
        ],
        check=True,
        cwd=ROOT,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Write gateway/envoy/envoy.yaml and rased.binpb; --check compares the YAML instead."""
    parser = argparse.ArgumentParser(prog="python -m rased.gateway.envoy_config")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--cors-origin", action="append", help="allowed browser origin")
    parser.add_argument("--tls-certificate", help="PEM certificate chain path inside Envoy")
    parser.add_argument("--tls-private-key", help="PEM private key path inside Envoy")
    parser.add_argument("--check", action="store_true", help="fail if envoy.yaml is stale")
    args = parser.parse_args(argv)
    options = EdgeOptions(
        cors_origins=tuple(args.cors_origin or EdgeOptions().cors_origins),
        tls_certificate=args.tls_certificate,
        tls_private_key=args.tls_private_key,
    )
    text = render(options)
    target = args.out_dir / CONFIG_NAME
    if args.check:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: run python -m rased.gateway.envoy_config", file=sys.stderr)
            return 1
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    build_descriptor_set(args.out_dir / DESCRIPTOR_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
