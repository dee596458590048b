"""`rased audit list`: an organization's audit log, newest first (no secrets in it)."""

from __future__ import annotations

import argparse
from typing import Any

from rased.cli.admin_client import Invoke, Noun, add_paging, fetch_pages, uuid_argument
from rased.cli.output import enum_word, show_page, when
from rased.v1 import admin_pb2, admin_pb2_grpc

Stub = admin_pb2_grpc.AdminServiceStub


def _add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    audit = commands.add_parser("audit", help="the audit log of an organization")
    actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="list audit events, newest first")
    listing.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    add_paging(listing)


def _line(e: admin_pb2.AuditEvent) -> str:
    outcome = enum_word(admin_pb2.AuditOutcome.Name(e.outcome), "AUDIT_OUTCOME_")
    action = e.action.rsplit("/", 1)[-1]
    return f"{when(e.create_time)}  {outcome:<7}  {e.actor:<36}  {action:<22}  {e.target}"


def _list(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    def fetch(size: int, token: str) -> tuple[list[admin_pb2.AuditEvent], str]:
        reply: admin_pb2.ListAuditEventsResponse = invoke(
            stub.ListAuditEvents,
            admin_pb2.ListAuditEventsRequest(
                organization_id=options.organization_id, page_size=size, page_token=token
            ),
        )
        return list(reply.events), reply.next_page_token

    events, token = fetch_pages(options, fetch)
    return show_page(options, "events", events, token, map(_line, events))


NOUN = Noun("audit", _add_parser, {"list": _list})
