"""The edge's route table comes from the contracts' google.api.http annotations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rased.devstack.settings import repository_root
from rased.gateway.routes import PathTemplate, RouteTable, TemplateError, build_routes
from rased.gateway.routes import contract_services as services


def _annotated_in_protos() -> set[tuple[str, str]]:
    # Read the .proto sources directly, so the check does not trust the code under test.
    found = set()
    for proto in sorted((Path(repository_root()) / "proto" / "rased" / "v1").glob("*.proto")):
        text = proto.read_text()
        for service, body in re.findall(r"service (\w+) \{(.*?)\n\}", text, re.S):
            for rpc, options in re.findall(
                r"rpc (\w+)\([^)]*\) returns \([^)]*\)(.*?;)", body, re.S
            ):
                if "google.api.http" in options:
                    found.add((service, rpc))
    return found


def test_every_annotated_method_has_a_route() -> None:
    routes = build_routes(services())
    declared = {(r.method.containing_service.name, r.method.name) for r in routes}
    expected = _annotated_in_protos()
    assert expected, "no annotated method found in proto/"
    assert declared == expected
    assert {
        ("POST", "/v1/event"),
        ("POST", "/v1/sessions"),
        ("GET", "/v1/results/{transaction_id}"),
    } <= {(r.http_method, r.path.template) for r in routes}


def test_requests_reach_the_right_method() -> None:
    table = RouteTable(build_routes(services()))
    cases = {
        ("POST", "/v1/event"): ("SubmitBatch", {}),
        ("GET", "/v1/results/txn%2F7"): ("GetResult", {"transaction_id": "txn/7"}),
        ("POST", "/v1/organizations/org-1/api-keys/k-9:revoke"): (
            "RevokeApiKey",
            {"organization_id": "org-1", "key_id": "k-9"},
        ),
        ("POST", "/v1/organizations/org-1/api-keys"): (
            "CreateApiKey",
            {"organization_id": "org-1"},
        ),
        ("GET", "/v1/organizations/org-1"): ("GetOrganization", {"organization_id": "org-1"}),
    }
    for (verb, path), (method, variables) in cases.items():
        found = table.match(verb, path)
        assert found is not None, path
        assert (found.route.method.name, found.variables) == (method, variables)
    assert table.match("GET", "/v1/event") is None
    assert table.match("POST", "/v1/results/a/b") is None
    assert table.allowed_methods("/v1/organizations/o/api-keys") == ["GET", "POST"]


def test_templates_follow_the_http_rule_grammar() -> None:
    deep = PathTemplate.parse("/v1/{name=projects/*/files/**}:download")
    assert deep.verb == "download"
    assert deep.match("/v1/projects/p1/files/a/b%20c.txt:download") == {
        "name": "projects/p1/files/a/b c.txt"
    }
    assert deep.match("/v1/projects/p1/other/a:download") is None
    nested = PathTemplate.parse("/v1/{batch.session_id}/x")
    assert nested.match("/v1/s-1/x") == {"batch.session_id": "s-1"}
    wild = PathTemplate.parse("/v1/*/items")
    assert wild.match("/v1/anything/items") == {}
    for bad in ("v1/x", "/v1/{x", "/v1/{1x}", "/v1/a:", "/v1/a*b"):
        with pytest.raises(TemplateError):
            PathTemplate.parse(bad)


def test_custom_verbs_are_tried_before_plain_variables() -> None:
    plain = PathTemplate.parse("/v1/keys/{key_id}")
    verb = PathTemplate.parse("/v1/keys/{key_id}:revoke")
    assert plain.match("/v1/keys/k1:revoke") == {"key_id": "k1:revoke"}
    assert verb.match("/v1/keys/k1:revoke") == {"key_id": "k1"}
    routes = build_routes(services())
    with_verb = [i for i, r in enumerate(routes) if r.path.verb is not None]
    without = [i for i, r in enumerate(routes) if r.path.verb is None]
    assert max(with_verb) < min(without)
