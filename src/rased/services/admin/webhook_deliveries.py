"""Webhook deliveries of an organization: list them (e.g. the dead-lettered), redeliver one.

The notification worker makes the attempts; redelivery only makes a delivery pending again
with a fresh retry schedule, due now, and the worker picks it up.
"""

from __future__ import annotations

from datetime import datetime

from rased.adapters.postgres.organizations import OrganizationDirectory
from rased.adapters.postgres.webhook_deliveries import (
    DeliveryRecord,
    DeliveryStatus,
    WebhookDeliveryStore,
)
from rased.common.errors import NotFound
from rased.services.admin.access import AccessControl
from rased.services.admin.administration import (
    Paging,
    _bad_token,
    _decode_token,
    _encode_token,
    action,
    org_target,
    require_organization,
)

DELIVERY_NOT_FOUND = "webhook delivery not found"


class WebhookDeliveries:
    """An organization's webhook deliveries, behind AccessControl."""

    def __init__(
        self,
        access: AccessControl,
        directory: OrganizationDirectory,
        store: WebhookDeliveryStore,
        paging: Paging | None = None,
    ) -> None:
        self._access = access
        self._directory = directory
        self._store = store
        self._paging = paging or Paging()

    async def _admit(
        self, authorization: str | None, method: str, organization_id: str, *target: str
    ) -> None:
        await self._access.admit(
            authorization,
            action(method),
            organization_id=organization_id,
            target=org_target(organization_id, "webhook-deliveries", *target),
        )
        await require_organization(self._directory, organization_id)

    async def list(
        self,
        authorization: str | None,
        organization_id: str,
        status: DeliveryStatus | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[DeliveryRecord], str]:
        """Return a page of the organization's deliveries, newest first, and the next token."""
        await self._admit(authorization, "ListWebhookDeliveries", organization_id)
        before: tuple[datetime, str] | None = None
        if page_token:
            cursor = _decode_token(page_token)
            if not (isinstance(cursor, list) and len(cursor) == 2):
                raise _bad_token()
            try:
                before = (datetime.fromisoformat(str(cursor[0])), str(cursor[1]))
            except ValueError as exc:
                raise _bad_token() from exc
        size = self._paging.size(page_size)
        page = await self._store.page(organization_id, size + 1, status, before)
        if len(page) <= size:
            return page, ""
        last = page[size - 1]
        return page[:size], _encode_token([last.created_at.isoformat(), last.delivery_id])

    async def redeliver(
        self, authorization: str | None, organization_id: str, delivery_id: str
    ) -> DeliveryRecord:
        """Schedule the delivery again (a fresh retry schedule, first attempt now)."""
        await self._admit(authorization, "RedeliverWebhook", organization_id, delivery_id)
        delivery = await self._store.redeliver(organization_id, delivery_id)
        if delivery is None:
            raise NotFound(DELIVERY_NOT_FOUND)
        return delivery
