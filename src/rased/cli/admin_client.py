"""What every `rased` AdminService command shares: options, argument checks and the call.

The credential comes from `--token` or the `RASED_OPERATOR_TOKEN` environment variable: the
operator token manages every organization, an organization's secret key only its own.
Errors are one line on stderr: 2 for a usage error found before any call, 1 for a refusal
or an unreachable service. How the commands print is in `output`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from google.protobuf import message

from rased.v1 import admin_pb2_grpc

TOKEN_ENV = "RASED_OPERATOR_TOKEN"  # noqa: S105 - the variable's name, not a token
# The contract's limits (buf.validate rules in admin.proto), checked here so that a typo
# costs a usage line rather than a round trip.
MAX_OVERLAP_SECONDS = 30 * 24 * 3600
MAX_PAGE_SIZE = 500
MAX_PAGE_TOKEN = 512
MAX_URL = 2048
MAX_RETENTION_DAYS = 3650

Invoke = Callable[[Any, message.Message], Any]
Handler = Callable[[admin_pb2_grpc.AdminServiceStub, argparse.Namespace, Invoke], int]
# Returns what is wrong with a command's arguments taken together, or None.
Check = Callable[[argparse.Namespace], str | None]
T = TypeVar("T")


@dataclass(frozen=True)
class Noun:
    """One `rased NOUN ACTION` group: how to add its parser, and each action's handler."""

    name: str
    add_parser: Callable[[Any, argparse.ArgumentParser], None]
    handlers: Mapping[str, Handler]
    checks: Mapping[str, Check] = field(default_factory=dict)


def common_options(target: str) -> argparse.ArgumentParser:
    """Return the parent parser of every action: where to connect, the credential, output.

    Args:
        target: the default `--target`: the local stack's admin service, host:port.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        default=target,
        help=f"admin service host:port ({target}, from $RASED_STACK_HOST and "
        "$RASED_STACK_ADMIN_PORT)",
    )
    common.add_argument(
        "--token",
        help=f"operator token, or the organization's secret key (default: ${TOKEN_ENV})",
    )
    common.add_argument("--timeout", type=positive_float, default=10.0, help="seconds to wait (10)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    return common


def positive_float(value: str) -> float:
    """Return a number of seconds; refuse what is not a positive number."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return number


def uuid_argument(value: str) -> str:
    """Return an id argument in canonical form; refuse what is not a UUID."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {value!r}") from None


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """Return an argument type taking whole numbers from `low` to `high`."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}: {value!r}")
        return number

    return parse


def text_argument(max_len: int, min_len: int = 0) -> Callable[[str], str]:
    """Return an argument type taking text of `min_len` to `max_len` characters."""

    def parse(value: str) -> str:
        if len(value.strip()) < min_len:
            raise argparse.ArgumentTypeError("must not be empty")
        if len(value) > max_len:
            raise argparse.ArgumentTypeError(f"longer than {max_len} characters")
        return value

    return parse


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNIT_SECONDS = (86400, 3600, 60, 1)


def duration_argument(value: str) -> int:
    """Return an overlap window in seconds, from e.g. `90s`, `15m`, `24h`, `7d` or `1h30m`."""
    text = value.strip().lower()
    if text.isdigit():
        seconds = int(text)
    else:
        matched = _DURATION.fullmatch(text)
        if not text or matched is None:
            raise argparse.ArgumentTypeError(
                f"not a duration: {value!r} (e.g. 90s, 15m, 24h, 7d, 1h30m)"
            )
        seconds = sum(
            int(part) * unit
            for part, unit in zip(matched.groups(), _UNIT_SECONDS, strict=True)
            if part
        )
    if seconds < 1:
        # The contract reads 0 as "the default" (24 hours): not what `--overlap 0` says.
        raise argparse.ArgumentTypeError("must be at least 1s (leave it out for the default, 24h)")
    if seconds > MAX_OVERLAP_SECONDS:
        raise argparse.ArgumentTypeError(f"longer than 30 days: {value!r}")
    return seconds


def url_argument(value: str, max_len: int = MAX_URL) -> str:
    """Return an http(s) URL with a host; refuse anything else (the service may ask https)."""
    if len(value) > max_len:
        raise argparse.ArgumentTypeError(f"longer than {max_len} characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a URL: {value!r}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise argparse.ArgumentTypeError(f"not an http(s) URL with a host: {value!r}")
    if parts.username or parts.password:
        raise argparse.ArgumentTypeError("must not carry credentials")
    return value


def add_overlap(parser: argparse.ArgumentParser, what: str) -> None:
    """Add a rotation's `--overlap DURATION`; `what` tells what the old key or secret does."""
    parser.add_argument(
        "--overlap",
        metavar="DURATION",
        type=duration_argument,
        default=0,  # the contract's "default": 24 hours
        help=f"{what} (default 24h, at most 30d)",
    )


def add_paging(parser: argparse.ArgumentParser) -> None:
    """Add `--page-size`, and `--page-token` or `--all`, to a listing action."""
    parser.add_argument(
        "--page-size",
        type=bounded_int(1, MAX_PAGE_SIZE),
        default=0,
        help=f"items per page (server default 50, at most {MAX_PAGE_SIZE})",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--page-token",
        type=text_argument(MAX_PAGE_TOKEN),
        default="",
        help="continue from a previous page's next_page_token",
    )
    which.add_argument("--all", action="store_true", help="follow every page")


def fetch_pages(
    options: argparse.Namespace, fetch: Callable[[int, str], tuple[Sequence[T], str]]
) -> tuple[list[T], str]:
    """Return one page (or with `--all` every page) and the next page's token."""
    if not options.all:
        items, token = fetch(options.page_size, options.page_token)
        return list(items), token
    collected: list[T] = []
    token = ""
    while True:
        items, token = fetch(options.page_size or MAX_PAGE_SIZE, token)
        collected.extend(items)
        if not token:
            return collected, ""


def run(options: argparse.Namespace, handler: Handler, check: Check | None = None) -> int:
    """Check the arguments, then run one action over one channel; return the exit status."""
    problem = check(options) if check is not None else None
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    token = options.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"error: no operator token: set ${TOKEN_ENV} or pass --token", file=sys.stderr)
        return 2
    metadata = (("authorization", f"Bearer {token}"),)
    try:
        with grpc.insecure_channel(options.target) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            return handler(
                stub,
                options,
                lambda call, request: call(request, metadata=metadata, timeout=options.timeout),
            )
    except grpc.RpcError as error:
        print(explain(error, options.target), file=sys.stderr)
        return 1


def explain(error: grpc.RpcError, target: str) -> str:
    """Return a refused or failed call as one line for the operator."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = error.details() if isinstance(error, grpc.Call) else ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return f"error: cannot reach the admin service at {target} ({code.name})"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"error: the admin service refused the credential ({details}); check ${TOKEN_ENV}"
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return f"error: not allowed: {details}"
    return f"error: {code.name}: {details}"
