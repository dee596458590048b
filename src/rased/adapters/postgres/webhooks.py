"""Webhook endpoints of organizations in PostgreSQL, their signing secrets sealed at rest."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from rased.adapters.postgres.keys import _parse_uuid, _postgres_errors
from rased.common.crypto import Keyring

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks marker, not a secret
_SECRET_BYTES = 32


@dataclass(frozen=True)
class WebhookEndpointRecord:
    """A webhook endpoint as listed: everything but its secrets."""

    endpoint_id: str
    organization_id: str
    url: str
    event_types: tuple[str, ...]
    enabled: bool
    include_scores: bool
    disabled_reason: str
    created_at: datetime


@dataclass(frozen=True)
class EndpointChanges:
    """Changes to an endpoint; None leaves a field as it is."""

    url: str | None = None
    enabled: bool | None = None
    include_scores: bool | None = None
    event_types: Sequence[str] | None = None


def new_secret() -> str:
    """Return a fresh signing secret: `whsec_` + base64 of 256 random bits."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def _context(org: uuid.UUID, endpoint: uuid.UUID) -> bytes:
    """Return the associated data binding a sealed secret to its organization and endpoint."""
    return f"rased.webhook_endpoints:{org}:{endpoint}".encode("ascii")


_COLUMNS = (
    "endpoint_id, organization_id, url, event_types, enabled, include_scores, disabled_reason, "
    "created_at"
)


def _record(row: asyncpg.Record) -> WebhookEndpointRecord:
    return WebhookEndpointRecord(
        endpoint_id=str(row["endpoint_id"]),
        organization_id=str(row["organization_id"]),
        url=row["url"],
        event_types=tuple(row["event_types"]),
        enabled=row["enabled"],
        include_scores=row["include_scores"],
        disabled_reason=row["disabled_reason"],
        created_at=row["created_at"],
    )


class WebhookEndpointStore:
    """Organizations' webhook endpoints; every lookup is by organization and endpoint id."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring) -> None:
        self._pool = pool
        self._keyring = keyring

    async def create(
        self,
        organization_id: str,
        url: str,
        event_types: Sequence[str] = (),
        include_scores: bool = False,
    ) -> tuple[WebhookEndpointRecord, str]:
        """Register an endpoint; return it and its signing secret (shown once).

        The organization must exist (the caller checks; a missing one is a foreign-key error).
        """
        org = uuid.UUID(organization_id)
        endpoint = uuid.uuid4()
        secret = new_secret()
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                "INSERT INTO webhook_endpoints (endpoint_id, organization_id, url, event_types, "  # noqa: S608 - constant columns
                "include_scores, secret_sealed, master_key_id) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
                endpoint,
                org,
                url,
                list(event_types),
                include_scores,
                self._keyring.seal(secret.encode("ascii"), _context(org, endpoint)),
                self._keyring.primary_key_id,
            )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return _record(row), secret

    async def list_for_organization(self, organization_id: str) -> list[WebhookEndpointRecord]:
        """Return the organization's endpoints (not deleted ones), oldest first."""
        org = _parse_uuid(organization_id)
        if org is None:
            return []
        async with _postgres_errors():
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM webhook_endpoints "  # noqa: S608 - constant columns
                "WHERE organization_id = $1 AND deleted_at IS NULL "
                "ORDER BY created_at, endpoint_id",
                org,
            )
        return [_record(row) for row in rows]

    async def update(
        self, organization_id: str, endpoint_id: str, changes: EndpointChanges
    ) -> WebhookEndpointRecord | None:
        """Apply changes; return the endpoint, or None when the organization has no such one.

        Enabling an endpoint clears the reason the system disabled it for.
        """
        org, endpoint = _parse_uuid(organization_id), _parse_uuid(endpoint_id)
        if org is None or endpoint is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                "UPDATE webhook_endpoints SET url = COALESCE($3, url), "  # noqa: S608 - constant columns
                "enabled = COALESCE($4, enabled), "
                "include_scores = COALESCE($5, include_scores), "
                "event_types = COALESCE($6, event_types), "
                "disabled_reason = CASE WHEN $4 THEN '' ELSE disabled_reason END, "
                "updated_at = now() "
                "WHERE organization_id = $1 AND endpoint_id = $2 AND deleted_at IS NULL "
                f"RETURNING {_COLUMNS}",
                org,
                endpoint,
                changes.url,
                changes.enabled,
                changes.include_scores,
                None if changes.event_types is None else list(changes.event_types),
            )
        return None if row is None else _record(row)

    async def delete(self, organization_id: str, endpoint_id: str) -> bool:
        """Mark an endpoint deleted; return False when the organization has no such one."""
        org, endpoint = _parse_uuid(organization_id), _parse_uuid(endpoint_id)
        if org is None or endpoint is None:
            return False
        async with _postgres_errors():
            status = await self._pool.execute(
                "UPDATE webhook_endpoints SET deleted_at = now(), enabled = false, "
                "updated_at = now() "
                "WHERE organization_id = $1 AND endpoint_id = $2 AND deleted_at IS NULL",
                org,
                endpoint,
            )
        return bool(status == "UPDATE 1")

    async def rotate_secret(
        self, organization_id: str, endpoint_id: str, previous_expires_at: datetime
    ) -> str | None:
        """Issue a new secret; the current one signs too until `previous_expires_at`.

        Returns the new secret, or None when the organization has no such endpoint.
        """
        org, endpoint = _parse_uuid(organization_id), _parse_uuid(endpoint_id)
        if org is None or endpoint is None:
            return None
        secret = new_secret()
        async with _postgres_errors():
            status = await self._pool.execute(
                "UPDATE webhook_endpoints SET previous_secret_sealed = secret_sealed, "
                "previous_secret_expires_at = $3, secret_sealed = $4, master_key_id = $5, "
                "updated_at = now() "
                "WHERE organization_id = $1 AND endpoint_id = $2 AND deleted_at IS NULL",
                org,
                endpoint,
                previous_expires_at,
                self._keyring.seal(secret.encode("ascii"), _context(org, endpoint)),
                self._keyring.primary_key_id,
            )
        return secret if status == "UPDATE 1" else None

    async def signing_secrets(self, organization_id: str, endpoint_id: str) -> list[str]:
        """Return the secrets that sign deliveries now: the current one, then the previous.

        For the notification worker. Empty when the endpoint is unknown or deleted.

        Raises:
            SealError: a secret cannot be opened with the configured master keys.
        """
        org, endpoint = _parse_uuid(organization_id), _parse_uuid(endpoint_id)
        if org is None or endpoint is None:
            return []
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                "SELECT secret_sealed, CASE WHEN previous_secret_expires_at > now() "
                "THEN previous_secret_sealed END AS previous FROM webhook_endpoints "
                "WHERE organization_id = $1 AND endpoint_id = $2 AND deleted_at IS NULL",
                org,
                endpoint,
            )
        if row is None:
            return []
        sealed = [row["secret_sealed"], *([row["previous"]] if row["previous"] else [])]
        return [self._keyring.open(s, _context(org, endpoint)).decode("ascii") for s in sealed]
