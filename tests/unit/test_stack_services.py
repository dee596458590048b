"""The services `make up` starts run on the stack's configurable ports."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from rased.devstack.base import StackError
from rased.devstack.services import SERVICE_ENTRIES, load_services
from rased.devstack.settings import StackSettings


def test_each_service_has_a_port_setting_whose_default_is_its_entrys() -> None:
    defaults = StackSettings()
    for service in load_services(defaults):
        ((field, port),) = service.ports.items()
        assert field in StackSettings.model_fields, f"{field} is named in errors: it must exist"
        assert port == service.entry.grpc_port  # compose and Envoy use the entry's port


def test_a_moved_port_reaches_the_service_and_the_gateway(tmp_path: Path) -> None:
    settings = StackSettings(state_dir=tmp_path, admin_port=51053, gateway_port=18080)
    services = {s.name: s for s in load_services(settings)}
    admin = services["admin"].environment()
    assert admin["RASED_ADMIN_GRPC_PORT"] == "51053"
    assert services["admin"].endpoint() == "127.0.0.1:51053"
    gateway = services["gateway"].environment()
    assert gateway["RASED_GATEWAY_HTTP_PORT"] == "18080"
    upstreams = json.loads(gateway["RASED_GATEWAY_UPSTREAMS"])
    assert upstreams["rased.v1.AdminService"] == "127.0.0.1:51053"
    assert upstreams["rased.v1.IngestService"] == "127.0.0.1:50051"
    assert len(upstreams) == sum(len(e.grpc_services) for e in SERVICE_ENTRIES)


def test_a_taken_port_names_the_setting_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = StackSettings(state_dir=tmp_path, results_port=port)
        (results,) = [s for s in load_services(settings) if s.name == "results"]
        with pytest.raises(StackError, match="RASED_STACK_RESULTS_PORT=<port>") as caught:
            results.start(lambda _message: None)
    assert str(port) in str(caught.value)
