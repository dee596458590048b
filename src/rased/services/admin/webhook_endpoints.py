"""Webhook endpoints of an organization: register, list, change, delete, rotate the secret.

Deliveries themselves (signing, retries, the SSRF guard on resolved addresses) are the
notification worker's; here a URL is only checked for its form: https, or http to any host
for organizations the operator allowed private targets (local development and tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from rased.adapters.postgres.organizations import OrganizationDirectory, OrganizationRecord
from rased.adapters.postgres.webhooks import (
    EndpointChanges,
    WebhookEndpointRecord,
    WebhookEndpointStore,
)
from rased.common.errors import FieldViolation, NotFound, ValidationFailed
from rased.services.admin.access import AccessControl
from rased.services.admin.administration import action, org_target, require_organization

ENDPOINT_NOT_FOUND = "webhook endpoint not found"


def check_url(url: str, organization: OrganizationRecord) -> None:
    """Raise ValidationFailed unless the URL may receive this organization's webhooks."""
    parts = urlsplit(url)
    schemes = ("https", "http") if organization.allow_private_webhook_targets else ("https",)
    problem = ""
    if parts.scheme not in schemes:
        problem = "must be an https URL"
    elif not parts.hostname:
        problem = "must name a host"
    elif parts.username or parts.password:
        problem = "must not carry credentials; the signature authenticates deliveries"
    if problem:
        raise ValidationFailed([FieldViolation("url", problem, "webhook_url")])


class WebhookEndpoints:
    """An organization's webhook endpoints, behind AccessControl."""

    def __init__(
        self,
        access: AccessControl,
        directory: OrganizationDirectory,
        store: WebhookEndpointStore,
        default_overlap: timedelta = timedelta(hours=24),
    ) -> None:
        self._access = access
        self._directory = directory
        self._store = store
        self._default_overlap = default_overlap

    async def _admit(
        self, authorization: str | None, method: str, organization_id: str, *target: str
    ) -> OrganizationRecord:
        await self._access.admit(
            authorization,
            action(method),
            organization_id=organization_id,
            target=org_target(organization_id, "webhook-endpoints", *target),
        )
        return await require_organization(self._directory, organization_id)

    async def create(
        self,
        authorization: str | None,
        organization_id: str,
        url: str,
        event_types: Sequence[str] = (),
        include_scores: bool = False,
    ) -> tuple[WebhookEndpointRecord, str]:
        """Register an endpoint; return it and its signing secret, shown once."""
        organization = await self._admit(authorization, "CreateWebhookEndpoint", organization_id)
        check_url(url, organization)
        return await self._store.create(
            organization.organization_id, url, event_types, include_scores
        )

    async def list(
        self, authorization: str | None, organization_id: str
    ) -> list[WebhookEndpointRecord]:
        """Return the organization's endpoints, without secrets."""
        await self._admit(authorization, "ListWebhookEndpoints", organization_id)
        return await self._store.list_for_organization(organization_id)

    async def update(
        self,
        authorization: str | None,
        organization_id: str,
        endpoint_id: str,
        changes: EndpointChanges,
    ) -> WebhookEndpointRecord:
        """Change an endpoint's URL, event types, score inclusion or enabled flag."""
        organization = await self._admit(
            authorization, "UpdateWebhookEndpoint", organization_id, endpoint_id
        )
        if changes.url is not None:
            check_url(changes.url, organization)
        updated = await self._store.update(organization_id, endpoint_id, changes)
        if updated is None:
            raise NotFound(ENDPOINT_NOT_FOUND)
        return updated

    async def delete(
        self, authorization: str | None, organization_id: str, endpoint_id: str
    ) -> None:
        """Delete an endpoint; it gets no more deliveries."""
        await self._admit(authorization, "DeleteWebhookEndpoint", organization_id, endpoint_id)
        if not await self._store.delete(organization_id, endpoint_id):
            raise NotFound(ENDPOINT_NOT_FOUND)

    async def rotate_secret(
        self,
        authorization: str | None,
        organization_id: str,
        endpoint_id: str,
        overlap: timedelta | None = None,
    ) -> tuple[str, datetime]:
        """Issue a new secret; return it and when the previous one stops signing."""
        await self._admit(authorization, "RotateWebhookSecret", organization_id, endpoint_id)
        expires = datetime.now(UTC) + (overlap or self._default_overlap)
        secret = await self._store.rotate_secret(organization_id, endpoint_id, expires)
        if secret is None:
            raise NotFound(ENDPOINT_NOT_FOUND)
        return secret, expires
