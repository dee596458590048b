"""The REST routes the contracts' `google.api.http` annotations declare, found at start-up."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import unquote

from google.protobuf.descriptor import (
    FieldDescriptor,
    FileDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)

HTTP_VERBS = ("get", "put", "post", "delete", "patch")


class TemplateError(ValueError):
    """A path template that does not follow the google.api.http grammar."""


@dataclass(frozen=True)
class PathTemplate:
    """A parsed path template such as `/v1/orgs/{organization_id}/keys/{key_id}:revoke`."""

    template: str
    variables: tuple[str, ...]
    literals: int
    verb: str | None
    pattern: re.Pattern[str] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, template: str) -> PathTemplate:
        """Parse a template (segments, `*`, `**`, `{field}`, `{field=a/*}`, `:verb`)."""
        if not template.startswith("/"):
            raise TemplateError(f"{template!r}: a template starts with '/'")
        path, verb = _split_verb(template)
        variables: list[str] = []
        literals = 0
        regex = ""
        for segment in _top_level_segments(path[1:]):
            if segment.startswith("{"):
                if not segment.endswith("}"):
                    raise TemplateError(f"{template!r}: unclosed variable {segment!r}")
                name, _, inner = segment[1:-1].partition("=")
                if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
                    raise TemplateError(f"{template!r}: bad field path {name!r}")
                group = f"v{len(variables)}"
                variables.append(name)
                regex += f"/(?P<{group}>{_segments_regex(inner or '*', template)})"
            else:
                literals += segment not in ("*", "**")
                regex += "/" + _segments_regex(segment, template)
        if verb is not None:
            regex += re.escape(":" + verb)
        return cls(template, tuple(variables), literals, verb, re.compile(regex + r"\Z"))

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Return the variables' decoded values if the (still percent-encoded) path matches."""
        found = self.pattern.match(raw_path)
        if found is None:
            return None
        return {
            name: _decode(found.group(f"v{i}"), multi="/" in found.group(f"v{i}"))
            for i, name in enumerate(self.variables)
        }


def _split_verb(template: str) -> tuple[str, str | None]:
    # A verb is a ':' after the last '/' and outside braces.
    depth = 0
    last_slash = 0
    colon = -1
    for i, char in enumerate(template):
        depth += (char == "{") - (char == "}")
        if depth == 0 and char == "/":
            last_slash, colon = i, -1
        elif depth == 0 and char == ":" and i > last_slash:
            colon = i
    if colon < 0:
        return template, None
    verb = template[colon + 1 :]
    if not verb:
        raise TemplateError(f"{template!r}: empty verb")
    return template[:colon], verb


def _top_level_segments(path: str) -> Iterator[str]:
    depth = 0
    current = ""
    for char in path:
        depth += (char == "{") - (char == "}")
        if char == "/" and depth == 0:
            yield current
            current = ""
        else:
            current += char
    yield current


def _segments_regex(segments: str, template: str) -> str:
    parts = []
    for segment in segments.split("/"):
        if segment == "*":
            parts.append(r"[^/]+")
        elif segment == "**":
            parts.append(r".+")
        elif segment and not re.search(r"[{}*]", segment):
            parts.append(re.escape(segment))
        else:
            raise TemplateError(f"{template!r}: bad segment {segment!r}")
    return "/".join(parts)


def _decode(value: str, multi: bool) -> str:
    # A multi-segment variable keeps its '/' separators; a single segment decodes everything.
    if multi:
        return "/".join(unquote(part) for part in value.split("/"))
    return unquote(value)


@dataclass(frozen=True)
class Route:
    """One REST binding of a gRPC method."""

    http_method: str
    path: PathTemplate
    body: str
    response_body: str
    method: MethodDescriptor

    @property
    def service(self) -> str:
        """Full name of the gRPC service, e.g. `rased.v1.IngestService`."""
        name: str = self.method.containing_service.full_name
        return name

    @property
    def grpc_path(self) -> str:
        """The gRPC method path, e.g. `/rased.v1.IngestService/SubmitBatch`."""
        return f"/{self.service}/{self.method.name}"

    @property
    def server_streaming(self) -> bool:
        """Whether the method answers with a stream."""
        return bool(self.method.server_streaming)

    @property
    def client_streaming(self) -> bool:
        """Whether the method takes a stream."""
        return bool(self.method.client_streaming)

    def specificity(self) -> tuple[int, int, int]:
        """Sort key: routes with a verb, then more literal segments, are tried first."""
        return (self.path.verb is None, -self.path.literals, len(self.path.variables))


def json_name(field: FieldDescriptor) -> str:
    """Return a field's proto-JSON name (lowerCamelCase unless the proto sets one)."""
    name: str = field.json_name  # type: ignore[attr-defined]  # missing from the stubs
    return name


def _rules(rule: Any) -> Iterator[Any]:
    yield rule
    for extra in rule.additional_bindings:
        yield from _rules(extra)


def routes_of_method(method: MethodDescriptor) -> list[Route]:
    """Return the REST bindings of one method (none when it carries no annotation)."""
    # google.api.http is registered by the generated modules' import of annotations_pb2.
    http = method.containing_service.file.pool.FindExtensionByName("google.api.http")
    options = method.GetOptions()
    if not options.HasExtension(http):
        return []
    found = []
    rule: Any
    for rule in _rules(options.Extensions[http]):
        pattern = rule.WhichOneof("pattern")
        if pattern is None:
            continue
        if pattern == "custom":
            verb, template = rule.custom.kind.upper(), rule.custom.path
        else:
            verb, template = pattern.upper(), getattr(rule, pattern)
        found.append(
            Route(verb, PathTemplate.parse(template), rule.body, rule.response_body, method)
        )
    return found


def contract_modules(package: str = "rased.v1") -> list[ModuleType]:
    """Import every generated `*_pb2` module of the contracts package."""
    root = importlib.import_module(package)
    return [
        importlib.import_module(f"{package}.{info.name}")
        for info in pkgutil.iter_modules(root.__path__)
        if info.name.endswith("_pb2")
    ]


def contract_services(package: str = "rased.v1") -> list[ServiceDescriptor]:
    """Return every service the contracts declare, in a stable order."""
    files: list[FileDescriptor] = [module.DESCRIPTOR for module in contract_modules(package)]
    services = [s for f in files for s in f.services_by_name.values()]
    return sorted(services, key=lambda s: s.full_name)


def build_routes(services: Iterable[ServiceDescriptor]) -> list[Route]:
    """Return the routes of every annotated method, most specific first."""
    routes = [
        route
        for service in services
        for method in service.methods
        for route in routes_of_method(method)
    ]
    return sorted(routes, key=Route.specificity)


@dataclass(frozen=True)
class RouteMatch:
    """A route that matched a request, with the path variables' values."""

    route: Route
    variables: dict[str, str]


class RouteTable:
    """Finds the route of an HTTP request."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=Route.specificity)

    def match(self, http_method: str, raw_path: str) -> RouteMatch | None:
        """Return the route for a method and path, or None."""
        for route in self.routes:
            if route.http_method != http_method:
                continue
            variables = route.path.match(raw_path)
            if variables is not None:
                return RouteMatch(route, variables)
        return None

    def allowed_methods(self, raw_path: str) -> list[str]:
        """Return the HTTP methods some route accepts on this path (for 405 and CORS)."""
        return sorted({r.http_method for r in self.routes if r.path.match(raw_path) is not None})
