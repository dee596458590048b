"""An OpenAPI 3 document of the REST surface, generated from the annotations and messages."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from rased.gateway.routes import Route, build_routes, contract_services, json_name

ERROR_SCHEMA = "google.rpc.Status"

_INT32 = {"type": "integer", "format": "int32"}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
# Proto-JSON writes 64-bit integers as strings (and reads both).
_INT64 = {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"}
_UINT64 = {"type": "string", "format": "uint64", "pattern": r"^[0-9]+$"}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
# Well-known types have their own JSON forms.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int64Value": _INT64,
    "google.protobuf.UInt64Value": _UINT64,
    "google.protobuf.Int32Value": _INT32,
    "google.protobuf.UInt32Value": _UINT32,
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
}
_STATUS_SCHEMA = {
    "type": "object",
    "description": "The gRPC status of a failed call, as grpc-gateway and Envoy write it.",
    "properties": {
        "code": {"type": "integer", "format": "int32", "description": "google.rpc.Code"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": _WELL_KNOWN["google.protobuf.Any"]},
    },
    "required": ["code", "message"],
}
_ERRORS = {
    "400": "Malformed JSON, an unknown field, a wrong type or a rule the contract sets.",
    "401": "Missing or invalid credentials.",
    "403": "The credentials may not do this.",
    "404": "Not found (or another tenant's).",
    "413": "The request body is over the size limit.",
    "429": "Rate limited; `Retry-After` says when to retry.",
    "503": "The service is not deployed or is unavailable; retry later.",
}


class _Schemas:
    """Collects the component schemas a set of messages needs."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, message: Descriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name not in self.components:
            self.components[message.full_name] = {}  # placeholder: breaks recursion
            self.components[message.full_name] = self._object(message)
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def _object(self, message: Descriptor, skip: Iterable[str] = ()) -> dict[str, Any]:
        skipped = set(skip)
        properties = {json_name(f): self.field(f) for f in message.fields if f.name not in skipped}
        return {"type": "object", "properties": properties, "additionalProperties": False}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single(value)}
        single = self._single(field)
        if field.is_repeated:
            return {"type": "array", "items": single}
        return single

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.enum_type is not None:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        if field.message_type is not None:
            return self.ref(field.message_type)
        return dict(_SCALARS[field.type])


def _openapi_path(route: Route) -> str:
    # `{name=a/*}` becomes `{name}`: OpenAPI has no multi-segment variables.
    return re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", route.path.template)


def _field_at(message: Descriptor, path: str) -> FieldDescriptor:
    field: FieldDescriptor | None = None
    current: Descriptor | None = message
    for part in path.split("."):
        assert current is not None, path
        field = current.fields_by_name[part]
        current = field.message_type
    assert field is not None
    return field


def _query_parameters(
    schemas: _Schemas, message: Descriptor, taken: set[str]
) -> list[dict[str, Any]]:
    parameters = []
    for field in message.fields:
        if field.name in taken:
            continue
        well_known = field.message_type is not None and field.message_type.full_name in _WELL_KNOWN
        if field.message_type is not None and not well_known:
            continue  # nested messages are not set from the query string here
        parameters.append({"name": json_name(field), "in": "query", "schema": schemas.field(field)})
    return parameters


def _operation(schemas: _Schemas, route: Route) -> dict[str, Any]:
    request, reply = route.method.input_type, route.method.output_type
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": schemas.field(_field_at(request, name)),
        }
        for name in route.path.variables
    ]
    taken = {name.split(".")[0] for name in route.path.variables}
    operation: dict[str, Any] = {
        "operationId": f"{route.method.containing_service.name}_{route.method.name}",
        "tags": [route.method.containing_service.name],
        "summary": f"{route.service}.{route.method.name}",
    }
    if route.body == "*":
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(request)}},
        }
    else:
        if route.body:
            taken.add(route.body)
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": schemas.field(_field_at(request, route.body))}
                },
            }
        parameters += _query_parameters(schemas, request, taken)
    if parameters:
        operation["parameters"] = parameters
    ok = schemas.field(_field_at(reply, route.response_body)) if route.response_body else None
    error = {
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}
        }
    }
    operation["responses"] = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": ok or schemas.ref(reply)}},
        },
        **{code: {"description": text, **error} for code, text in _ERRORS.items()},
        "default": {"description": "Any other error, as a gRPC status.", **error},
    }
    return operation


def build_document(routes: Sequence[Route]) -> dict[str, Any]:
    """Return the OpenAPI 3.0 document of these routes."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(routes, key=lambda r: (r.path.template, r.http_method)):
        paths.setdefault(_openapi_path(route), {})[route.http_method.lower()] = _operation(
            schemas, route
        )
    components = dict(sorted(schemas.components.items()))
    components[ERROR_SCHEMA] = _STATUS_SCHEMA
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Rased API",
            "version": "v1",
            "description": "Generated from the google.api.http annotations of proto/rased/v1.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A secret key, publishable key or session token.",
                }
            },
        },
        "security": [{"bearer": []}],
    }


def render() -> str:
    """Return the document of every annotated method of the contracts, as stable JSON."""
    return json.dumps(build_document(build_routes(contract_services())), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the OpenAPI document (default docs/openapi.json); --check compares instead."""
    parser = argparse.ArgumentParser(prog="python -m rased.gateway.openapi")
    parser.add_argument("--out", type=Path, default=Path("docs/openapi.json"))
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is stale: run make openapi", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
