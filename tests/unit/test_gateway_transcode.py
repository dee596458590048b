"""HTTP requests become request messages as grpc-gateway and Envoy build them."""

from __future__ import annotations

import json

import pytest

from rased.gateway.routes import Route, RouteTable, build_routes, contract_services
from rased.gateway.transcode import BadRequest, build_request, render_response
from rased.v1 import admin_pb2, ingest_pb2, results_pb2, scoring_pb2


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return RouteTable(build_routes(contract_services()))


def _route(table: RouteTable, verb: str, path: str) -> tuple[Route, dict[str, str]]:
    found = table.match(verb, path)
    assert found is not None
    return found.route, found.variables


def test_the_body_fills_the_request_and_path_variables_win(table: RouteTable) -> None:
    route, variables = _route(table, "POST", "/v1/organizations/org-path/api-keys/k1:revoke")
    body = json.dumps({"organizationId": "org-body"}).encode()
    request = build_request(route, variables, [], body)
    assert isinstance(request, admin_pb2.RevokeApiKeyRequest)
    assert (request.organization_id, request.key_id) == ("org-path", "k1")


def test_query_parameters_fill_the_other_fields(table: RouteTable) -> None:
    route, variables = _route(table, "GET", "/v1/results")
    query = [
        ("pageSize", "10"),
        ("page_token", "abc"),
        ("startTime", "2026-01-01T00:00:00Z"),
        ("riskLevels", "RISK_LEVEL_HIGH"),
        ("riskLevels", "RISK_LEVEL_CRITICAL"),
    ]
    request = build_request(route, variables, query, b"")
    assert isinstance(request, results_pb2.ListResultsRequest)
    assert (request.page_size, request.page_token) == (10, "abc")
    assert request.start_time.seconds == 1_767_225_600
    assert list(request.risk_levels) == [
        scoring_pb2.RISK_LEVEL_HIGH,
        scoring_pb2.RISK_LEVEL_CRITICAL,
    ]
    for bad in (("pageSize", "ten"), ("pageToken", "a"), ("riskLevels", "PURPLE")):
        with pytest.raises(BadRequest):
            build_request(route, variables, [bad, ("pageToken", "b")], b"")
    with pytest.raises(BadRequest, match="unknown field"):
        build_request(route, variables, [("noSuchField", "1")], b"")
    with pytest.raises(BadRequest, match="no request body"):
        build_request(route, variables, [], b'{"a": 1}')


def test_bad_json_unknown_fields_and_wrong_types_are_bad_requests(table: RouteTable) -> None:
    route, variables = _route(table, "POST", "/v1/event")
    for body in (
        b"{",
        b"[]",
        b"\xff",
        b'{"batch": {"colour": 1}}',
        b'{"batch": {"trigger": "maybe"}}',
        b'{"batch": {"events": {}}}',
    ):
        with pytest.raises(BadRequest):
            build_request(route, variables, [], body)
    ok = build_request(route, variables, [], b'{"batch": {"batch_id": "b1", "trigger": true}}')
    assert isinstance(ok, ingest_pb2.SubmitBatchRequest)
    assert ok.batch.batch_id == "b1" and ok.batch.trigger


def test_replies_use_proto_json_names_and_enum_names(table: RouteTable) -> None:
    route, _ = _route(table, "POST", "/v1/event")
    reply = ingest_pb2.SubmitBatchResponse(
        batch_id="b1",
        disposition=ingest_pb2.BATCH_DISPOSITION_FLUSHED,
        flush_reason=ingest_pb2.FLUSH_REASON_TRIGGER,
    )
    assert render_response(route, reply) == {
        "batchId": "b1",
        "disposition": "BATCH_DISPOSITION_FLUSHED",
        "flushReason": "FLUSH_REASON_TRIGGER",
    }
