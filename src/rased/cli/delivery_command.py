"""`rased delivery list|redeliver`: an organization's webhook deliveries, e.g. dead letters."""

from __future__ import annotations

import argparse
from typing import Any

from rased.cli.admin_client import Invoke, Noun, add_paging, fetch_pages, uuid_argument
from rased.cli.output import as_dict, enum_word, show, show_page, when
from rased.v1 import admin_pb2, admin_pb2_grpc

Stub = admin_pb2_grpc.AdminServiceStub
_STATUSES = {
    "pending": admin_pb2.DELIVERY_STATUS_PENDING,
    "succeeded": admin_pb2.DELIVERY_STATUS_SUCCEEDED,
    "dead-lettered": admin_pb2.DELIVERY_STATUS_DEAD_LETTERED,
    "cancelled": admin_pb2.DELIVERY_STATUS_CANCELLED,
}


def _add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    delivery = commands.add_parser("delivery", help="webhook deliveries of an organization")
    actions = delivery.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="list deliveries, newest first")
    listing.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    listing.add_argument(
        "--status", choices=list(_STATUSES), help="only deliveries in this status (default: all)"
    )
    add_paging(listing)
    redeliver = actions.add_parser(
        "redeliver", parents=[common], help="attempt a (dead-lettered) delivery again, now"
    )
    redeliver.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    redeliver.add_argument("delivery_id", metavar="DELIVERY_ID", type=uuid_argument)


def _status(delivery: admin_pb2.WebhookDelivery) -> str:
    return enum_word(admin_pb2.DeliveryStatus.Name(delivery.status), "DELIVERY_STATUS_")


def _line(d: admin_pb2.WebhookDelivery) -> str:
    answer = f"HTTP {d.last_status_code}" if d.last_status_code else "no answer"
    if not d.attempts:
        answer = "not attempted"
    attempts = f"{d.attempts:>2} attempt{'' if d.attempts == 1 else 's'}"
    line = (
        f"{d.delivery_id}  {_status(d):<13}  {attempts:<11}  {answer:<13}  "
        f"{d.event_type}  {d.transaction_id}"
    )
    return f"{line}  {d.last_error}" if d.last_error else line


def _list(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    status = _STATUSES[options.status] if options.status else admin_pb2.DELIVERY_STATUS_UNSPECIFIED

    def fetch(size: int, token: str) -> tuple[list[admin_pb2.WebhookDelivery], str]:
        reply: admin_pb2.ListWebhookDeliveriesResponse = invoke(
            stub.ListWebhookDeliveries,
            admin_pb2.ListWebhookDeliveriesRequest(
                organization_id=options.organization_id,
                status=status,
                page_size=size,
                page_token=token,
            ),
        )
        return list(reply.deliveries), reply.next_page_token

    deliveries, token = fetch_pages(options, fetch)
    return show_page(options, "deliveries", deliveries, token, map(_line, deliveries))


def _redeliver(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.RedeliverWebhookResponse = invoke(
        stub.RedeliverWebhook,
        admin_pb2.RedeliverWebhookRequest(
            organization_id=options.organization_id, delivery_id=options.delivery_id
        ),
    )
    d = reply.delivery
    return show(
        options,
        as_dict(d),
        [f"delivery {d.delivery_id} is {_status(d)}; next attempt {when(d.next_attempt_time)}"],
    )


NOUN = Noun("delivery", _add_parser, {"list": _list, "redeliver": _redeliver})
