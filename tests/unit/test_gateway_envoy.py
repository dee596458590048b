"""Envoy's generated config is current and consistent with the contracts and docker-compose."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap
from google.protobuf import descriptor_pb2, descriptor_pool

from rased.devstack.services import SERVICE_ENTRIES
from rased.devstack.settings import repository_root
from rased.gateway.envoy_config import (
    CONFIG_NAME,
    DESCRIPTOR_NAME,
    MOUNT,
    EdgeOptions,
    build_config,
    build_descriptor_set,
    render,
)
from rased.gateway.routes import build_routes, contract_services

ENVOY_DIR = Path(repository_root()) / "gateway" / "envoy"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ENVOY_DIR / CONFIG_NAME).read_text())
    return loaded


@pytest.fixture(scope="module")
def pool() -> descriptor_pool.DescriptorPool:
    files = descriptor_pb2.FileDescriptorSet.FromString((ENVOY_DIR / DESCRIPTOR_NAME).read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)  # type: ignore[no-untyped-call]
    return pool


def _manager(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    manager: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return manager


def _filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        f["typed_config"] for f in _manager(config)["http_filters"] if f["name"] == name
    )
    return found


def _type_urls(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "@type":
                yield value
            else:
                yield from _type_urls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _type_urls(value)


def parse_strictly(config: dict[str, Any]) -> Bootstrap:
    """Parse the config as Envoy's Bootstrap, refusing unknown fields, enums and types."""
    # envoy-data-plane registers a typed_config's message type when its module is imported;
    # the package path is the proto package, so each `@type` names the module to import.
    for url in set(_type_urls(config)):
        package = url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        try:
            importlib.import_module(f"envoy_data_plane.{package}")
        except ImportError as exc:
            raise TypeError(f"{url} is not a type of Envoy's API") from exc
    return Bootstrap.from_dict(config)


def test_the_config_parses_strictly_against_envoys_api(config: dict[str, Any]) -> None:
    resources = parse_strictly(config).static_resources
    assert resources is not None
    (listener,) = resources.listeners
    assert listener.address is not None and listener.address.socket_address is not None
    assert listener.address.socket_address.port_value == 8080
    assert {c.name for c in resources.clusters} == {
        c["name"] for c in config["static_resources"]["clusters"]
    }
    tls = EdgeOptions(tls_certificate="/certs/edge.pem", tls_private_key="/certs/edge.key")
    parse_strictly(build_config(build_routes(contract_services()), tls))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("static_resources", "listeners", 0, "bogus_field"), 1),
        (
            (
                "static_resources",
                "listeners",
                0,
                "filter_chains",
                0,
                "filters",
                0,
                "typed_config",
                "stat_prefx",
            ),
            "typo",
        ),
        (("static_resources", "clusters", 0, "lb_policy"), "FASTEST"),
        (("static_resources", "clusters", 0, "connect_timeout"), "soon"),
        (
            (
                "static_resources",
                "listeners",
                0,
                "filter_chains",
                0,
                "filters",
                0,
                "typed_config",
                "@type",
            ),
            "type.googleapis.com/envoy.extensions.filters.network.nothing.v3.Nothing",
        ),
    ],
)
def test_the_strict_parse_refuses_what_envoy_would(
    config: dict[str, Any], path: tuple[str | int, ...], value: object
) -> None:
    broken = copy.deepcopy(config)
    node: Any = broken
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    with pytest.raises((KeyError, ValueError, TypeError)):
        parse_strictly(broken)


def test_the_committed_files_are_current(tmp_path: Path) -> None:
    assert (ENVOY_DIR / CONFIG_NAME).read_text() == render(), (
        "gateway/envoy/envoy.yaml is stale: run python -m rased.gateway.envoy_config"
    )
    build_descriptor_set(tmp_path / DESCRIPTOR_NAME)
    assert (tmp_path / DESCRIPTOR_NAME).read_bytes() == (ENVOY_DIR / DESCRIPTOR_NAME).read_bytes()


def test_every_route_maps_to_a_method_of_the_descriptor_set(
    config: dict[str, Any], pool: descriptor_pool.DescriptorPool
) -> None:
    routes = _manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    paths = [r["match"]["path"] for r in routes]
    for path in paths:
        service, method = path.strip("/").split("/")
        found = pool.FindServiceByName(service)  # type: ignore[no-untyped-call]
        assert method in found.methods_by_name
    annotated = {r.grpc_path for r in build_routes(contract_services())}
    assert set(paths) == annotated
    transcoder = _filter(config, "envoy.filters.http.grpc_json_transcoder")
    assert transcoder["proto_descriptor"] == f"{MOUNT}/{DESCRIPTOR_NAME}"
    for service in transcoder["services"]:
        assert pool.FindServiceByName(service)  # type: ignore[no-untyped-call]
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["max_request_body_size"] > 0


def test_clusters_are_the_compose_services_that_serve_grpc(config: dict[str, Any]) -> None:
    compose = yaml.safe_load((Path(repository_root()) / "docker-compose.yml").read_text())
    services = compose["services"]
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    serving = {e.name: e for e in SERVICE_ENTRIES if e.grpc_services}
    assert set(clusters) == set(serving)
    for name, cluster in clusters.items():
        assert name in services, f"cluster {name} is not a docker-compose service"
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["socket_address"] == {
            "address": name,
            "port_value": serving[name].grpc_port,
        }
        assert cluster["health_checks"][0]["grpc_health_check"] == {}
    routes = _manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    for route in routes:
        if "route" in route:
            assert route["route"]["cluster"] in clusters
            assert route["route"]["retry_policy"]["num_retries"] >= 1
        else:
            assert route["direct_response"]["status"] == 503
    envoy = services["envoy"]
    assert "./gateway/envoy:/etc/envoy:ro" in envoy["volumes"]
    assert "8080:8080" in envoy["ports"]


def test_admin_is_on_loopback_and_the_listener_on_8080(config: dict[str, Any]) -> None:
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == 8080
    access_log = _manager(config)["access_log"][0]["typed_config"]
    assert "json_format" in access_log["log_format"]
    assert "transport_socket" not in listener["filter_chains"][0]


def test_cors_and_tls_follow_the_options() -> None:
    options = EdgeOptions(
        cors_origins=("https://shop.example",),
        tls_certificate="/certs/edge.pem",
        tls_private_key="/certs/edge.key",
    )
    config = build_config(build_routes(contract_services()), options)
    host = _manager(config)["route_config"]["virtual_hosts"][0]
    cors = host["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert cors["allow_origin_string_match"] == [{"exact": "https://shop.example"}]
    chain = config["static_resources"]["listeners"][0]["filter_chains"][0]
    certificate = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert certificate["tls_certificates"][0]["certificate_chain"] == {
        "filename": "/certs/edge.pem"
    }
