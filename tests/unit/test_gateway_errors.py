"""gRPC statuses become the HTTP answers Envoy's transcoder would give."""

from __future__ import annotations

from datetime import timedelta

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from rased.common import errors
from rased.common.interceptors.errors import status_for
from rased.gateway.errors import HTTP_STATUS, http_error


def test_codes_map_as_envoy_maps_them() -> None:
    expected = {
        "OK": 200,
        "INVALID_ARGUMENT": 400,
        "FAILED_PRECONDITION": 400,
        "OUT_OF_RANGE": 400,
        "UNAUTHENTICATED": 401,
        "PERMISSION_DENIED": 403,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "ABORTED": 409,
        "RESOURCE_EXHAUSTED": 429,
        "CANCELLED": 499,
        "UNKNOWN": 500,
        "INTERNAL": 500,
        "DATA_LOSS": 500,
        "UNIMPLEMENTED": 501,
        "UNAVAILABLE": 503,
        "DEADLINE_EXCEEDED": 504,
    }
    assert {code.name: status for code, status in HTTP_STATUS.items()} == expected
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


def test_the_body_is_a_status_with_its_details() -> None:
    status, _ = status_for(
        errors.ValidationFailed([errors.FieldViolation("batch.batch_id", "too short")])
    )
    answer = http_error(grpc.StatusCode.INVALID_ARGUMENT, status.message, status)
    assert answer.status == 400
    assert answer.body["code"] == 3
    (detail,) = answer.body["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["fieldViolations"] == [{"field": "batch.batch_id", "description": "too short"}]


def test_payload_too_large_is_413() -> None:
    status, _ = status_for(errors.PayloadTooLarge("too big", limit_bytes=10, actual_bytes=20))
    assert http_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "", status).status == 413


def test_rate_limits_say_when_to_retry() -> None:
    status, trailers = status_for(errors.QuotaExceeded("slow down", timedelta(seconds=2.2)))
    from_trailer = http_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "", status, trailers)
    assert (from_trailer.status, from_trailer.headers) == (429, {"Retry-After": "3"})
    only_detail = status_pb2.Status(code=8, message="slow down")
    only_detail.details.add().Pack(
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=4, nanos=1))
    )
    answer = http_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "", only_detail)
    assert answer.headers == {"Retry-After": "5"}
    assert http_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota").headers == {}


def test_unknown_detail_types_are_passed_raw() -> None:
    status = status_pb2.Status(code=13, message="boom")
    detail = status.details.add()
    detail.type_url = "type.googleapis.com/example.Unknown"
    detail.value = b"\x01\x02"
    answer = http_error(grpc.StatusCode.INTERNAL, "boom", status)
    assert answer.status == 500
    assert answer.body["details"] == [
        {"@type": "type.googleapis.com/example.Unknown", "value": "AQI="}
    ]
