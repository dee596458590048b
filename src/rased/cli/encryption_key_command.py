"""`rased encryption-key get|rotate`: the public key the SDK encrypts event batches to.

Only the public half is ever shown; the private key never leaves the service.
"""

from __future__ import annotations

import argparse
from typing import Any

from rased.cli.admin_client import Invoke, Noun, add_overlap, uuid_argument
from rased.cli.output import as_dict, show, when
from rased.v1 import admin_pb2, admin_pb2_grpc

Stub = admin_pb2_grpc.AdminServiceStub


def _add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    key = commands.add_parser(
        "encryption-key", help="the public key for encrypted event batches (JWE)"
    )
    actions = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    get = actions.add_parser("get", parents=[common], help="show the current public key")
    get.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    rotate = actions.add_parser(
        "rotate", parents=[common], help="generate a new key pair; the old one decrypts a while"
    )
    rotate.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    add_overlap(rotate, "how long the old private key keeps decrypting")


def _show_key(options: argparse.Namespace, key: admin_pb2.EncryptionKey) -> int:
    return show(
        options,
        as_dict(key),
        [
            f"encryption key {key.key_id} ({key.algorithm}, {key.encryption})",
            f"created {when(key.create_time)}",
            key.public_jwk,
        ],
    )


def _get(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.GetEncryptionKeyResponse = invoke(
        stub.GetEncryptionKey,
        admin_pb2.GetEncryptionKeyRequest(organization_id=options.organization_id),
    )
    return _show_key(options, reply.key)


def _rotate(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.RotateEncryptionKeyResponse = invoke(
        stub.RotateEncryptionKey,
        admin_pb2.RotateEncryptionKeyRequest(
            organization_id=options.organization_id, overlap_seconds=options.overlap
        ),
    )
    return _show_key(options, reply.key)


NOUN = Noun("encryption-key", _add_parser, {"get": _get, "rotate": _rotate})
