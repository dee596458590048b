"""gRPC statuses as HTTP answers: Envoy's code mapping and grpc-gateway's JSON error body."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

# Envoy's Grpc::Utility::grpcToHttpStatus, which grpc_json_transcoder applies.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# The ingestion service's reason for a batch over its size limit (common/interceptors/errors).
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"


@dataclass(frozen=True)
class HttpError:
    """An error answer: HTTP status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def _code_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number


def _detail_json(detail: Any) -> dict[str, Any]:
    try:
        rendered: dict[str, Any] = json_format.MessageToDict(detail)
    except (TypeError, KeyError, json_format.Error):
        # A detail type this process does not know: give it as grpc-gateway does, raw.
        return {
            "@type": detail.type_url,
            "value": base64.b64encode(detail.value).decode(),
        }
    return rendered


def _retry_after(status: status_pb2.Status | None, trailers: dict[str, str]) -> str | None:
    if trailers.get("retry-after"):
        return trailers["retry-after"]
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            seconds = info.retry_delay.ToNanoseconds() / 1e9
            return str(max(1, math.ceil(seconds)))
    return None


def _reasons(status: status_pb2.Status | None) -> set[str]:
    reasons = set()
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reasons.add(info.reason)
    return reasons


def http_error(
    code: grpc.StatusCode,
    message: str,
    status: status_pb2.Status | None = None,
    trailers: Iterable[tuple[str, str | bytes]] = (),
) -> HttpError:
    """Map a gRPC status (and its rich details and trailers) to the HTTP answer."""
    text_trailers = {k.lower(): v for k, v in trailers if isinstance(v, str)}
    http_status = HTTP_STATUS.get(code, 500)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and PAYLOAD_TOO_LARGE in _reasons(status):
        http_status = 413
    headers = {}
    if http_status == 429:
        retry_after = _retry_after(status, text_trailers)
        if retry_after is not None:
            headers["Retry-After"] = retry_after
    body = {
        "code": _code_number(code),
        "message": status.message if status is not None and status.message else message,
        "details": [_detail_json(d) for d in (status.details if status is not None else ())],
    }
    return HttpError(http_status, body, headers)


def local_error(code: grpc.StatusCode, message: str, http_status: int | None = None) -> HttpError:
    """An error the edge answers itself, in the same shape."""
    error = http_error(code, message)
    if http_status is None:
        return error
    return HttpError(http_status, error.body, error.headers)
