"""Builds a request message from an HTTP request and renders replies, in proto-JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from rased.gateway.routes import Route, json_name


class BadRequest(ValueError):
    """The HTTP request cannot become a valid request message (answered 400)."""


def message_class(descriptor: Descriptor) -> type[Message]:
    """Return the Python class of a message descriptor."""
    return message_factory.GetMessageClass(descriptor)


def _field(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    found: FieldDescriptor | None = descriptor.fields_by_name.get(name)
    if found is None:
        found = next((f for f in descriptor.fields if json_name(f) == name), None)
    return found


def _resolve(descriptor: Descriptor, path: str) -> list[FieldDescriptor]:
    fields = []
    current: Descriptor | None = descriptor
    for part in path.split("."):
        found = _field(current, part) if current is not None else None
        if found is None:
            raise BadRequest(f"unknown field {path!r}")
        fields.append(found)
        current = found.message_type
    return fields


def _scalar(field: FieldDescriptor, text: str) -> Any:
    # json_format accepts strings for integers, enums, bytes (base64) and well-known types;
    # booleans and floats need converting first.
    if field.type == FieldDescriptor.TYPE_BOOL:
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise BadRequest(f"{field.name}: expected true or false, got {text!r}")
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        try:
            return float(text)
        except ValueError:
            raise BadRequest(f"{field.name}: expected a number, got {text!r}") from None
    return text


def _place(tree: dict[str, Any], fields: list[FieldDescriptor], values: list[str]) -> None:
    *parents, leaf = fields
    for parent in parents:
        if parent.is_repeated:
            raise BadRequest(f"{parent.name}: a repeated field cannot hold a path or query field")
        tree = tree.setdefault(parent.name, {})
        if not isinstance(tree, dict):
            raise BadRequest(f"{parent.name}: conflicting values")
    is_repeated = leaf.is_repeated
    well_known = leaf.message_type is not None and leaf.message_type.full_name.startswith(
        "google.protobuf."
    )
    if leaf.message_type is not None and not well_known:
        raise BadRequest(f"{leaf.name}: a message field cannot be set from the URL")
    if not is_repeated and len(values) > 1:
        raise BadRequest(f"{leaf.name}: given more than once")
    converted = [_scalar(leaf, v) for v in values]
    tree[leaf.name] = converted if is_repeated else converted[0]


def _merge(message: Message, tree: dict[str, Any]) -> None:
    try:
        json_format.ParseDict(tree, message, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise BadRequest(str(error)) from None


def build_request(
    route: Route,
    variables: dict[str, str],
    query: Iterable[tuple[str, str]],
    body: bytes,
) -> Message:
    """Return the request message: the body, then query parameters, then path variables."""
    descriptor = route.method.input_type
    request = message_class(descriptor)()
    if route.body:
        target = request
        if route.body != "*":
            field = _resolve(descriptor, route.body)[-1]
            if field.message_type is None or field.is_repeated:
                # The body is a scalar or repeated field: wrap it so ParseDict can read it.
                wrapped = {field.name: _load_json(body)}
                _merge(request, wrapped)
            else:
                target = getattr(request, field.name)
                _merge_json(target, body)
        else:
            _merge_json(target, body)
    elif body.strip():
        raise BadRequest("this method takes no request body")

    consumed = set(variables)
    if route.body != "*":
        grouped: dict[str, list[str]] = {}
        for name, value in query:
            grouped.setdefault(name, []).append(value)
        tree: dict[str, Any] = {}
        for name, values in grouped.items():
            fields = _resolve(descriptor, name)
            if fields[0].name in consumed or (route.body and fields[0].name == route.body):
                raise BadRequest(f"{name!r} is set by the path or the body")
            _place(tree, fields, values)
        _merge(request, tree)

    # Path variables win over the body, as in grpc-gateway and Envoy.
    path_tree: dict[str, Any] = {}
    for name, value in variables.items():
        _place(path_tree, _resolve(descriptor, name), [value])
    _merge(request, path_tree)
    return request


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None


def _merge_json(target: Message, body: bytes) -> None:
    value = _load_json(body)
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    _merge(target, value)


def render_response(route: Route, reply: Message) -> Any:
    """Return the JSON value of a reply (or of its `response_body` field)."""
    if route.response_body:
        value = json_format.MessageToDict(reply, preserving_proto_field_name=False)
        field = _resolve(route.method.output_type, route.response_body)[-1]
        return value.get(json_name(field))
    return json_format.MessageToDict(reply, preserving_proto_field_name=False)
