"""The local REST edge: an aiohttp server that transcodes the annotated routes to gRPC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import Message
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from rased.common.correlation import CORRELATION_HEADER, accept_correlation_id
from rased.gateway.errors import HttpError, http_error, local_error
from rased.gateway.openapi import build_document
from rased.gateway.routes import Route, RouteTable, build_routes, contract_services
from rased.gateway.settings import GatewaySettings
from rased.gateway.transcode import BadRequest, build_request, message_class, render_response

logger = logging.getLogger(__name__)

_CORS_ALLOW_HEADERS = "authorization, content-type, x-correlation-id"
_CORS_EXPOSE_HEADERS = "retry-after, x-correlation-id"
_Unary = Callable[..., Awaitable[Message]]


_CORRELATION = web.RequestKey("correlation_id", str)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _error(error: HttpError) -> web.Response:
    return _json(error.status, error.body, error.headers)


class Refusal(Exception):
    """A request the edge answers itself, without calling an upstream."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int | None = None):
        super().__init__(message)
        self.error = local_error(code, message, http_status)


class Gateway:
    """Routes, upstream channels and the handlers of the edge."""

    def __init__(self, settings: GatewaySettings, routes: Sequence[Route] | None = None) -> None:
        self.settings = settings
        services = contract_services()
        self.table = RouteTable(routes if routes is not None else build_routes(services))
        self.openapi = build_document(self.table.routes)
        self._channels: dict[str, aio.Channel] = {}
        self._calls: dict[str, _Unary] = {}

    def _channel(self, target: str) -> aio.Channel:
        if target not in self._channels:
            self._channels[target] = aio.insecure_channel(target)
        return self._channels[target]

    def _call(self, route: Route) -> _Unary | None:
        target = self.settings.upstreams.get(route.service)
        if target is None:
            return None
        key = f"{target}{route.grpc_path}"
        if key not in self._calls:
            reply_class = message_class(route.method.output_type)
            self._calls[key] = self._channel(target).unary_unary(
                route.grpc_path,
                request_serializer=_serialize,
                response_deserializer=reply_class.FromString,
            )
        return self._calls[key]

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether CORS lets this browser origin call the API."""
        allowed = self.settings.cors_allowed_origins
        return origin is not None and ("*" in allowed or origin in allowed)

    async def close(self) -> None:
        """Close the upstream channels."""
        await asyncio.gather(*(c.close() for c in self._channels.values()))
        self._channels.clear()
        self._calls.clear()

    def _too_large(self) -> Refusal:
        limit = self.settings.max_body_bytes
        return Refusal(
            grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body is over {limit} bytes", 413
        )

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Transcode one REST call to its gRPC method."""
        # Set first, so the access log and every answer carry it.
        request[_CORRELATION] = accept_correlation_id(request.headers.get(CORRELATION_HEADER))
        try:
            return await self._transcode(request)
        except Refusal as refusal:
            return _error(refusal.error)

    async def _transcode(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        if request.method == "OPTIONS":
            return self._preflight(request, raw_path)
        found = self.table.match(request.method, raw_path)
        if found is None:
            allowed = self.table.allowed_methods(raw_path)
            if allowed:
                error = local_error(grpc.StatusCode.UNIMPLEMENTED, "method not allowed", 405)
                return _json(error.status, error.body, {"Allow": ", ".join(allowed)})
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"no route for {raw_path}")
        route = found.route
        if route.client_streaming or route.server_streaming:
            raise Refusal(
                grpc.StatusCode.UNIMPLEMENTED, "streaming methods are served over gRPC only"
            )
        body = await self._read_body(request)
        try:
            message = build_request(route, found.variables, request.rel_url.query.items(), body)
        except BadRequest as error:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        call = self._call(route)
        if call is None:
            raise Refusal(
                grpc.StatusCode.UNAVAILABLE, f"{route.service} is not deployed behind this gateway"
            )
        try:
            reply = await call(
                message,
                metadata=self._metadata(request),
                timeout=self.settings.upstream_timeout.total_seconds(),
            )
        except aio.AioRpcError as failure:
            return _error(_from_rpc_error(failure))
        return _json(200, render_response(route, reply))

    def _metadata(self, request: web.Request) -> tuple[tuple[str, str], ...]:
        pairs = [(CORRELATION_HEADER, request[_CORRELATION])]
        for name in self.settings.forward_headers:
            value = request.headers.get(name)
            if value is not None and name.lower() != CORRELATION_HEADER:
                pairs.append((name.lower(), value))
        return tuple(pairs)

    def _preflight(self, request: web.Request, raw_path: str) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = self.table.allowed_methods(raw_path)
        if not allowed:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"no route for {raw_path}")
        if not self.origin_allowed(origin):
            return _error(local_error(grpc.StatusCode.PERMISSION_DENIED, "origin not allowed", 403))
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": ", ".join(allowed),
                "Access-Control-Allow-Headers": request.headers.get(
                    "Access-Control-Request-Headers", _CORS_ALLOW_HEADERS
                ),
                "Access-Control-Max-Age": str(int(self.settings.cors_max_age.total_seconds())),
            },
        )

    async def serve_openapi(self, request: web.Request) -> web.StreamResponse:
        """Serve the OpenAPI document of the REST surface."""
        return _json(200, self.openapi)

    async def health(self, request: web.Request) -> web.StreamResponse:
        """Aggregate grpc.health.v1 of every configured upstream service."""

        async def check(service: str, target: str) -> tuple[str, str]:
            try:
                reply = await health_pb2_grpc.HealthStub(self._channel(target)).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=2
                )
            except aio.AioRpcError as error:
                return service, error.code().name
            return service, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        results = dict(
            await asyncio.gather(*(check(s, t) for s, t in self.settings.upstreams.items()))
        )
        serving = all(state == "SERVING" for state in results.values())
        return _json(
            200 if serving else 503,
            {"status": "SERVING" if serving else "NOT_SERVING", "services": results},
        )


def _from_rpc_error(failure: aio.AioRpcError) -> HttpError:
    try:
        status = rpc_status.from_call(failure)
    except ValueError:
        status = None
    return http_error(
        failure.code(), failure.details() or "", status, failure.trailing_metadata() or ()
    )


def build_app(settings: GatewaySettings, gateway: Gateway | None = None) -> web.Application:
    """Return the aiohttp application of the edge."""
    edge = gateway or Gateway(settings)

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as http:
            # aiohttp's own answers (e.g. a body it refused) also get the JSON error shape.
            response = _json(
                http.status,
                {"code": grpc.StatusCode.UNKNOWN.value[0], "message": http.reason, "details": []},
            )
        except Exception:  # the caller sees a generic error, the log the cause
            logger.exception("unhandled error in the gateway")
            response = _error(local_error(grpc.StatusCode.INTERNAL, "internal error"))
        origin = request.headers.get("Origin")
        if origin is not None:
            # The answer depends on the origin: shared caches must key on it.
            response.headers.add("Vary", "Origin")
            if edge.origin_allowed(origin):
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = _CORS_EXPOSE_HEADERS
        correlation = request.get(_CORRELATION)
        if correlation is not None:
            response.headers[CORRELATION_HEADER] = correlation
        return response

    async def close(_: web.Application) -> None:
        await edge.close()

    app = web.Application(middlewares=[guard], client_max_size=settings.max_body_bytes + 1)
    app.router.add_get("/openapi.json", edge.serve_openapi)
    app.router.add_get("/health", edge.health)
    app.router.add_route("*", "/{tail:.*}", edge.handle)
    app.on_cleanup.append(close)
    return app
