"""The OpenAPI document describes every REST route, with schemas from the messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from rased.devstack.settings import repository_root
from rased.gateway.openapi import build_document, render
from rased.gateway.routes import build_routes, contract_services


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(build_routes(contract_services()))


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_every_route_is_an_operation_with_its_path_parameters(document: dict[str, Any]) -> None:
    routes = build_routes(contract_services())
    operations = {
        (verb.upper(), path): op
        for path, item in document["paths"].items()
        for verb, op in item.items()
    }
    assert len(operations) == len(routes)
    for route in routes:
        path = re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", route.path.template)
        operation = operations[(route.http_method, path)]
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", path))
        assert {"200", "400", "401", "429", "503"} <= set(operation["responses"])
    ids = [op["operationId"] for op in operations.values()]
    assert len(ids) == len(set(ids))


def test_schemas_use_proto_json_names_and_enum_names(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    batch = schemas["rased.v1.EventBatch"]["properties"]
    assert {"batchId", "sessionId", "transactionId", "clientSentAtMs"} <= set(batch)
    assert batch["clientSentAtMs"]["type"] == "string"  # 64-bit integers are JSON strings
    reply = schemas["rased.v1.SubmitBatchResponse"]["properties"]
    assert "BATCH_DISPOSITION_FLUSHED" in reply["disposition"]["enum"]
    listing = document["paths"]["/v1/results"]["get"]
    assert {"pageSize", "pageToken", "riskLevels"} <= {p["name"] for p in listing["parameters"]}


def test_the_committed_document_is_current() -> None:
    committed = Path(repository_root()) / "docs" / "openapi.json"
    assert committed.read_text() == render(), "docs/openapi.json is stale: run make openapi"
    json.loads(committed.read_text())
