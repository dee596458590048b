"""`rased key create|list|revoke|rotate`: an organization's API keys.

A key's text is printed once, when it is created or rotated in, and never again.
"""

from __future__ import annotations

import argparse
from typing import Any

from rased.cli.admin_client import (
    Invoke,
    Noun,
    add_overlap,
    text_argument,
    url_argument,
    uuid_argument,
)
from rased.cli.output import as_dict, enum_word, show, shown_once, when
from rased.v1 import admin_pb2, admin_pb2_grpc

Stub = admin_pb2_grpc.AdminServiceStub
_KINDS = {
    "publishable": admin_pb2.API_KEY_KIND_PUBLISHABLE,
    "secret": admin_pb2.API_KEY_KIND_SECRET,
}
# CreateApiKeyRequest.allowed_origins' rules.
MAX_ORIGINS = 50
MAX_ORIGIN = 255


def origin_argument(value: str) -> str:
    """Return an allowed origin, e.g. `https://pay.example.com`; refuse what is not one."""
    return url_argument(value, MAX_ORIGIN)


def _add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    key = commands.add_parser("key", help="API keys of an organization")
    actions = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help="create an API key")
    create.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    create.add_argument("--kind", choices=sorted(_KINDS), required=True)
    create.add_argument(
        "--origin",
        action="append",
        default=[],
        type=origin_argument,
        help=f"allowed origin (publishable; repeatable, at most {MAX_ORIGINS})",
    )
    create.add_argument("--label", default="", type=text_argument(200), help="free-text label")
    listing = actions.add_parser("list", parents=[common], help="list API keys (no secrets)")
    listing.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    listing.add_argument("--all", action="store_true", help="include revoked and expired keys")
    revoke = actions.add_parser("revoke", parents=[common], help="revoke an API key at once")
    revoke.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    revoke.add_argument("key_id", metavar="KEY_ID", type=uuid_argument)
    rotate = actions.add_parser(
        "rotate", parents=[common], help="replace an API key; the old one works for an overlap"
    )
    rotate.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    rotate.add_argument("key_id", metavar="KEY_ID", type=uuid_argument)
    add_overlap(rotate, "how long the old key keeps working, e.g. 15m, 24h, 7d")


def _check_create(options: argparse.Namespace) -> str | None:
    if len(options.origin) > MAX_ORIGINS:
        return f"at most {MAX_ORIGINS} --origin values, got {len(options.origin)}"
    return None


def _kind(kind: admin_pb2.ApiKeyKind.ValueType) -> str:
    return enum_word(admin_pb2.ApiKeyKind.Name(kind), "API_KEY_KIND_")


def _line(k: admin_pb2.ApiKey) -> str:
    state = "revoked" if k.HasField("revoke_time") else "active"
    if k.HasField("expire_time"):
        state += f", expires {when(k.expire_time)}"
    return f"{k.key_id}  {_kind(k.kind):<11}  {k.prefix}...  {state}  {k.label}"


def _create(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.CreateApiKeyResponse = invoke(
        stub.CreateApiKey,
        admin_pb2.CreateApiKeyRequest(
            organization_id=options.organization_id,
            kind=_KINDS[options.kind],
            allowed_origins=options.origin,
            label=options.label,
        ),
    )
    made = reply.api_key
    return show(
        options,
        {"key": as_dict(made.key), "secret": made.secret},
        [f"{options.kind} key {made.key.key_id}: {made.secret}", shown_once("key")],
    )


def _list(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.ListApiKeysResponse = invoke(
        stub.ListApiKeys,
        admin_pb2.ListApiKeysRequest(
            organization_id=options.organization_id, include_inactive=options.all
        ),
    )
    return show(options, [as_dict(k) for k in reply.api_keys], map(_line, reply.api_keys))


def _revoke(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.RevokeApiKeyResponse = invoke(
        stub.RevokeApiKey,
        admin_pb2.RevokeApiKeyRequest(
            organization_id=options.organization_id, key_id=options.key_id
        ),
    )
    return show(options, as_dict(reply.api_key), [f"revoked key {reply.api_key.key_id}"])


def _rotate(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.RotateApiKeyResponse = invoke(
        stub.RotateApiKey,
        admin_pb2.RotateApiKeyRequest(
            organization_id=options.organization_id,
            key_id=options.key_id,
            overlap_seconds=options.overlap,
        ),
    )
    new, old = reply.new_key, reply.old_key
    return show(
        options,
        {"key": as_dict(new.key), "secret": new.secret, "old_key": as_dict(old)},
        [
            f"new {_kind(new.key.kind)} key {new.key.key_id}: {new.secret}",
            f"old key {old.key_id} keeps working until {when(old.expire_time)}",
            shown_once("key"),
        ],
    )


NOUN = Noun(
    "key",
    _add_parser,
    {"create": _create, "list": _list, "revoke": _revoke, "rotate": _rotate},
    checks={"create": _check_create},
)
