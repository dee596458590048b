"""docker-compose.yml describes the same stack as the local one: services, ports, settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rased.devstack.orchestrator import SERVER_NAMES
from rased.devstack.settings import StackSettings, repository_root


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    path = Path(repository_root()) / "docker-compose.yml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _published(service: dict[str, Any]) -> dict[int, int]:
    ports: dict[int, int] = {}
    for mapping in service.get("ports", []):
        host, _, container = str(mapping).rpartition(":")
        ports[int(container)] = int(host)
    return ports


def test_every_local_server_is_a_compose_service(compose: dict[str, Any]) -> None:
    assert set(SERVER_NAMES) <= set(compose["services"])


def test_ports_match_the_local_defaults(compose: dict[str, Any]) -> None:
    defaults = StackSettings(state_dir=Path("/nonexistent"))
    expected = {
        "redis": [defaults.redis_port],
        "postgres": [defaults.postgres_port],
        "kafka": [defaults.kafka_port, defaults.kafka_controller_port],
        "cassandra": [defaults.cassandra_port, defaults.cassandra_storage_port],
        "triton": [
            defaults.triton_http_port,
            defaults.triton_grpc_port,
            defaults.triton_metrics_port,
        ],
    }
    for name, ports in expected.items():
        published = _published(compose["services"][name])
        for port in ports:
            assert published.get(port) == port, f"{name} does not publish {port}:{port}"


def test_environment_matches_the_local_settings(compose: dict[str, Any]) -> None:
    defaults = StackSettings(state_dir=Path("/nonexistent"))
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] == defaults.postgres_user
    assert postgres["POSTGRES_DB"] == defaults.postgres_db
    kafka = services["kafka"]["environment"]
    assert f"PLAINTEXT://localhost:{defaults.kafka_port}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith(f":{defaults.kafka_controller_port}")
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert services["kafka"]["image"].endswith(f":{defaults.kafka_version}")
    assert services["cassandra"]["image"].split(":")[1] == ".".join(
        defaults.cassandra_version.split(".")[:2]
    )
    assert "--appendonly" in services["redis"]["command"]
    triton = " ".join(services["triton"]["command"])
    assert f"--grpc-port={defaults.triton_grpc_port}" in triton
    assert "./model_repository:/models:ro" in services["triton"]["volumes"]


def test_rased_services_env_names_their_settings(compose: dict[str, Any]) -> None:
    import importlib
    import inspect

    from pydantic_settings import BaseSettings

    checked = 0
    for name, service in compose["services"].items():
        if service.get("image") != "rased:dev":
            continue
        module = importlib.import_module(f"rased.services.{name}.settings")
        (settings,) = [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__
        ]
        prefix = settings.model_config.get("env_prefix", "")
        for variable in service.get("environment", {}):
            assert variable.startswith(prefix), f"{name}: {variable} lacks {prefix}"
            field = variable.removeprefix(prefix).lower()
            assert field in settings.model_fields, f"{name}: {variable} is not a setting"
        checked += 1
    assert checked >= 6
