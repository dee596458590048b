"""`rased org create|list|get|retention`: organizations.

Creating and listing organizations takes the operator token; an organization's secret key
may read its own organization and set its retention.
"""

from __future__ import annotations

import argparse
from typing import Any

from rased.cli.admin_client import (
    MAX_RETENTION_DAYS,
    Invoke,
    Noun,
    add_paging,
    bounded_int,
    fetch_pages,
    text_argument,
    uuid_argument,
)
from rased.cli.output import as_dict, show, show_page, shown_once, when
from rased.v1 import admin_pb2, admin_pb2_grpc

Stub = admin_pb2_grpc.AdminServiceStub


def _add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    org = commands.add_parser("org", help="organizations")
    actions = org.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", parents=[common], help="create an organization and its first keys (operator)"
    )
    create.add_argument("name", type=text_argument(200, min_len=1), help="display name")
    create.add_argument(
        "--retention-days",
        type=bounded_int(1, MAX_RETENTION_DAYS),
        default=0,
        help="days events and results are kept (default 90)",
    )
    create.add_argument(
        "--allow-private-webhook-targets",
        action="store_true",
        help="let webhooks target private or loopback addresses (local development only)",
    )
    listing = actions.add_parser("list", parents=[common], help="list organizations (operator)")
    add_paging(listing)
    get = actions.add_parser("get", parents=[common], help="show one organization")
    get.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    retention = actions.add_parser(
        "retention",
        parents=[common],
        help="set how many days events and results are kept (data written from now on)",
    )
    retention.add_argument("organization_id", metavar="ORG_ID", type=uuid_argument)
    retention.add_argument(
        "days", metavar="DAYS", type=bounded_int(1, MAX_RETENTION_DAYS), help="days to keep"
    )


def _create(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.CreateOrganizationResponse = invoke(
        stub.CreateOrganization,
        admin_pb2.CreateOrganizationRequest(
            name=options.name,
            retention_days=options.retention_days,
            allow_private_webhook_targets=options.allow_private_webhook_targets,
        ),
    )
    org, publishable, secret = reply.organization, reply.publishable_key, reply.secret_key
    return show(
        options,
        {
            "organization_id": org.organization_id,
            "name": org.name,
            "retention_days": org.retention_days,
            "allow_private_webhook_targets": org.allow_private_webhook_targets,
            "publishable_key": publishable.secret,
            "publishable_key_id": publishable.key.key_id,
            "secret_key": secret.secret,
            "secret_key_id": secret.key.key_id,
        },
        [
            f"organization {org.organization_id} ({org.name}, {org.retention_days} days)",
            f"publishable key {publishable.key.key_id}: {publishable.secret}",
            f"secret key      {secret.key.key_id}: {secret.secret}",
            shown_once("keys", plural=True),
        ],
    )


def _list(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    def fetch(size: int, token: str) -> tuple[list[admin_pb2.Organization], str]:
        reply: admin_pb2.ListOrganizationsResponse = invoke(
            stub.ListOrganizations,
            admin_pb2.ListOrganizationsRequest(page_size=size, page_token=token),
        )
        return list(reply.organizations), reply.next_page_token

    organizations, token = fetch_pages(options, fetch)
    return show_page(
        options,
        "organizations",
        organizations,
        token,
        (f"{o.organization_id}  {o.retention_days:>4} days  {o.name}" for o in organizations),
    )


def _get(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.GetOrganizationResponse = invoke(
        stub.GetOrganization,
        admin_pb2.GetOrganizationRequest(organization_id=options.organization_id),
    )
    org = reply.organization
    private = "allowed" if org.allow_private_webhook_targets else "not allowed"
    return show(
        options,
        as_dict(org),
        [
            f"organization {org.organization_id}",
            f"  name                     {org.name}",
            f"  retention                {org.retention_days} days",
            f"  created                  {when(org.create_time)}",
            f"  private webhook targets  {private}",
        ],
    )


def _retention(stub: Stub, options: argparse.Namespace, invoke: Invoke) -> int:
    reply: admin_pb2.SetRetentionResponse = invoke(
        stub.SetRetention,
        admin_pb2.SetRetentionRequest(
            organization_id=options.organization_id, retention_days=options.days
        ),
    )
    org = reply.organization
    return show(
        options,
        as_dict(org),
        [
            f"organization {org.organization_id} keeps events and results {org.retention_days} "
            "days (data written from now on)"
        ],
    )


NOUN = Noun(
    "org",
    _add_parser,
    {"create": _create, "list": _list, "get": _get, "retention": _retention},
)
