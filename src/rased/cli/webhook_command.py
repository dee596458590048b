"""`rased webhook create|list|update|delete|rotate-secret`: an organization's webhook endpoints.

A signing secret is printed once, when the endpoint is created or its secret rotated.
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
from rased.cli.output import as_dict, show, shown_once, when
from rased.v1 import admin_pb2, admin_pb2_grpc

Stub = admin_pb2_grpc.AdminServiceStub
# The event_types rules of CreateWebhookEndpointRequest and UpdateWebhookEndpointRequest.
MAX_EVENT_TYPES = 20
_event_type = text_argument(64, min_len=1)


def _add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    hook = commands.add_parser("webhook", help="webhook endpoints of an organization")
    actions = hook.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", parents=[common], help="register an endpoint (its secret is shown once)"
    )
    create.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    create.add_argument("url", metavar="URL", type=url_argument, help="https URL to POST to")
    create.add_argument(
        "--event",
        dest="events",
        metavar="TYPE",
        action="append",
        default=[],
        type=_event_type,
        help="event type to deliver, e.g. transaction.scored (repeatable; default: all)",
    )
    create.add_argument(
        "--include-scores", action="store_true", help="include the six scores in payloads"
    )

    listing = actions.add_parser("list", parents=[common], help="list endpoints (no secrets)")
    listing.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)

    update = actions.add_parser(
        "update", parents=[common], help="change an endpoint; what is not named stays"
    )
    update.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    update.add_argument("endpoint_id", metavar="ENDPOINT_ID", type=uuid_argument)
    update.add_argument("--url", type=url_argument, help="new URL")
    enabled = update.add_mutually_exclusive_group()
    enabled.add_argument(
        "--enable", dest="enabled", action="store_const", const=True, help="deliver again"
    )
    enabled.add_argument(
        "--disable", dest="enabled", action="store_const", const=False, help="stop delivering"
    )
    update.add_argument(
        "--include-scores",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include the six scores in payloads, or not",
    )
    events = update.add_mutually_exclusive_group()
    events.add_argument(
        "--event",
        dest="events",
        metavar="TYPE",
        action="append",
        type=_event_type,
        help="replace the event types with these (repeatable)",
    )
    events.add_argument(
        "--all-events", action="store_true", help="deliver every event type from now on"
    )

    delete = actions.add_parser(
        "delete", parents=[common], help="delete an endpoint; its pending deliveries are cancelled"
    )
    delete.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    delete.add_argument("endpoint_id", metavar="ENDPOINT_ID", type=uuid_argument)

    rotate = actions.add_parser(
        "rotate-secret",
        parents=[common],
        help="issue a new signing secret; both sign during the overlap",
    )
    rotate.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    rotate.add_argument("endpoint_id", metavar="ENDPOINT_ID", type=uuid_argument)
    add_overlap(rotate, "how long the old secret signs too, e.g. 15m, 24h")


def _too_many_events(options: argparse.Namespace) -> str | None:
    count = len(options.events or ())
    if count > MAX_EVENT_TYPES:
        return f"at most {MAX_EVENT_TYPES} --event types, got {count}"
    return None


def _check_update(options: argparse.Namespace) -> str | None:
    unchanged = (
        options.url is None
        and options.enabled is None
        and options.include_scores is None
        and options.events is None
        and not options.all_events
    )
    if unchanged:
        return (
            "nothing to change: pass --url, --enable or --disable, "
            "--include-scores or --no-include-scores, --event or --all-events"
        )
    return _too_many_events(options)


def _line(e: admin_pb2.WebhookEndpoint) -> str:
    state = "enabled" if e.enabled else "disabled"
    if e.disabled_reason:
        state += f" ({e.disabled_reason})"
    scores = "scores" if e.include_scores else "no scores"
    events = ",".join(e.event_types) or "all events"
    return f"{e.endpoint_id}  {state}  {scores}  {events}  {e.url}"


def _create(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.CreateWebhookEndpointResponse = invoke(
        stub.CreateWebhookEndpoint,
        admin_pb2.CreateWebhookEndpointRequest(
            organization_id=options.organization_id,
            url=options.url,
            event_types=options.events,
            include_scores=options.include_scores,
        ),
    )
    return show(
        options,
        {"endpoint": as_dict(reply.endpoint), "secret": reply.secret},
        [
            f"webhook endpoint {_line(reply.endpoint)}",
            f"signing secret: {reply.secret}",
            shown_once("secret"),
        ],
    )


def _list(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.ListWebhookEndpointsResponse = invoke(
        stub.ListWebhookEndpoints,
        admin_pb2.ListWebhookEndpointsRequest(organization_id=options.organization_id),
    )
    return show(options, [as_dict(e) for e in reply.endpoints], map(_line, reply.endpoints))


def _update(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    request = admin_pb2.UpdateWebhookEndpointRequest(
        organization_id=options.organization_id, endpoint_id=options.endpoint_id
    )
    # Optional fields: only what was named is set, so the rest stays as it is.
    if options.url is not None:
        request.url = options.url
    if options.enabled is not None:
        request.enabled = options.enabled
    if options.include_scores is not None:
        request.include_scores = options.include_scores
    if options.events is not None or options.all_events:
        request.replace_event_types = True
        request.event_types.extend(options.events or ())
    reply: admin_pb2.UpdateWebhookEndpointResponse = invoke(stub.UpdateWebhookEndpoint, request)
    return show(
        options, as_dict(reply.endpoint), [f"updated webhook endpoint {_line(reply.endpoint)}"]
    )


def _delete(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.DeleteWebhookEndpointResponse = invoke(
        stub.DeleteWebhookEndpoint,
        admin_pb2.DeleteWebhookEndpointRequest(
            organization_id=options.organization_id, endpoint_id=options.endpoint_id
        ),
    )
    return show(
        options,
        as_dict(reply),
        [f"deleted webhook endpoint {reply.endpoint_id}; its pending deliveries are cancelled"],
    )


def _rotate_secret(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.RotateWebhookSecretResponse = invoke(
        stub.RotateWebhookSecret,
        admin_pb2.RotateWebhookSecretRequest(
            organization_id=options.organization_id,
            endpoint_id=options.endpoint_id,
            overlap_seconds=options.overlap,
        ),
    )
    return show(
        options,
        {"endpoint_id": options.endpoint_id, **as_dict(reply)},
        [
            f"new signing secret of webhook endpoint {options.endpoint_id}: {reply.secret}",
            f"the previous secret signs too until {when(reply.previous_secret_expire_time)}",
            shown_once("secret"),
        ],
    )


NOUN = Noun(
    "webhook",
    _add_parser,
    {
        "create": _create,
        "list": _list,
        "update": _update,
        "delete": _delete,
        "rotate-secret": _rotate_secret,
    },
    checks={"create": _too_many_events, "update": _check_update},
)
