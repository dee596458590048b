"""The admin API's domain: every operation admits the caller first, then acts.

Each method takes the caller's `authorization` metadata, so no operation can be reached
without the access decision (and its audit record) that guards it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rased.adapters.postgres.audit import AuditEntry, AuditLog
from rased.adapters.postgres.keys import (
    ApiKeyKind,
    ApiKeyRecord,
    ApiKeyStore,
    EncryptionKeyRecord,
    EncryptionKeyStore,
    OrganizationStore,
)
from rased.adapters.postgres.organizations import (
    KeyLifecycle,
    OrganizationDirectory,
    OrganizationRecord,
)
from rased.common.errors import FieldViolation, NotFound, ValidationFailed
from rased.services.admin.access import ORGANIZATION_NOT_FOUND, AccessControl, Principal

SERVICE = "rased.v1.AdminService"
KEY_NOT_FOUND = "API key not found"


def action(method: str) -> str:
    """Return the audited name of a method, e.g. `rased.v1.AdminService/GetOrganization`."""
    return f"{SERVICE}/{method}"


@dataclass(frozen=True)
class IssuedKey:
    """A key as created: its listing data and the key itself, shown once."""

    record: ApiKeyRecord
    secret: str


@dataclass(frozen=True)
class NewOrganization:
    """An organization with its first keys."""

    organization: OrganizationRecord
    publishable_key: IssuedKey
    secret_key: IssuedKey


@dataclass(frozen=True)
class Paging:
    """Page size rules: `default` for 0, never more than `maximum`."""

    default: int = 50
    maximum: int = 500

    def size(self, asked: int) -> int:
        """Return the page size to serve."""
        return min(asked or self.default, self.maximum)


def org_target(organization_id: str, *rest: str) -> str:
    """Return the audited target path, e.g. `organizations/<id>/api-keys/<id>`."""
    return "/".join(("organizations", organization_id, *rest))


async def require_organization(
    directory: OrganizationDirectory, organization_id: str
) -> OrganizationRecord:
    """Return the organization; raise NotFound when there is none with this id."""
    found = await directory.get(organization_id)
    if found is None:
        raise NotFound(ORGANIZATION_NOT_FOUND)
    return found


def _encode_token(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _decode_token(token: str) -> object:
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise _bad_token() from exc


def _bad_token() -> ValidationFailed:
    return ValidationFailed(
        [FieldViolation("page_token", "not a token from a previous response", "page_token")]
    )


def _is_active(key: ApiKeyRecord, now: datetime) -> bool:
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > now)


class Administration:
    """Organizations, API keys, encryption keys and the audit log, behind AccessControl."""

    def __init__(
        self,
        access: AccessControl,
        organizations: OrganizationStore,
        directory: OrganizationDirectory,
        api_keys: ApiKeyStore,
        lifecycle: KeyLifecycle,
        encryption_keys: EncryptionKeyStore,
        audit: AuditLog,
        *,
        default_retention_days: int = 90,
        default_overlap: timedelta = timedelta(hours=24),
        paging: Paging | None = None,
    ) -> None:
        self._access = access
        self._organizations = organizations
        self._directory = directory
        self._api_keys = api_keys
        self._lifecycle = lifecycle
        self._encryption_keys = encryption_keys
        self._audit = audit
        self._default_retention_days = default_retention_days
        self._default_overlap = default_overlap
        self._paging = paging or Paging()

    async def _admit(
        self, authorization: str | None, method: str, organization_id: str, *target: str
    ) -> Principal:
        return await self._access.admit(
            authorization,
            action(method),
            organization_id=organization_id,
            target=org_target(organization_id, *target),
        )

    async def _organization(self, organization_id: str) -> OrganizationRecord:
        return await require_organization(self._directory, organization_id)

    # Organizations

    async def create_organization(
        self,
        authorization: str | None,
        name: str,
        retention_days: int = 0,
        allow_private_webhook_targets: bool = False,
    ) -> NewOrganization:
        """Create an organization with a publishable key, a secret key and a JWE key pair."""
        await self._access.admit(
            authorization,
            action("CreateOrganization"),
            target="organizations",
            operator_only=True,
        )
        org_id = await self._organizations.create(
            name, retention_days or self._default_retention_days
        )
        try:
            publishable = await self._issue(org_id, ApiKeyKind.PUBLISHABLE, (), "first key")
            secret = await self._issue(org_id, ApiKeyKind.SECRET, (), "first key")
            await self._encryption_keys.create(org_id)
            if allow_private_webhook_targets:
                await self._directory.allow_private_webhook_targets(org_id, True)
        except BaseException:
            # No half-made organization: its keys go with it (ON DELETE CASCADE).
            await self._directory.delete(org_id)
            raise
        return NewOrganization(await self._organization(org_id), publishable, secret)

    async def get_organization(
        self, authorization: str | None, organization_id: str
    ) -> OrganizationRecord:
        """Return one organization."""
        await self._admit(authorization, "GetOrganization", organization_id)
        return await self._organization(organization_id)

    async def list_organizations(
        self, authorization: str | None, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[OrganizationRecord], str]:
        """Return a page of organizations (oldest first) and the next page's token."""
        await self._access.admit(
            authorization,
            action("ListOrganizations"),
            target="organizations",
            operator_only=True,
        )
        after: tuple[datetime, str] | None = None
        if page_token:
            cursor = _decode_token(page_token)
            if not (isinstance(cursor, list) and len(cursor) == 2):
                raise _bad_token()
            try:
                after = (datetime.fromisoformat(str(cursor[0])), str(cursor[1]))
            except ValueError as exc:
                raise _bad_token() from exc
        size = self._paging.size(page_size)
        page = await self._directory.page(size + 1, after)
        if len(page) <= size:
            return page, ""
        last = page[size - 1]
        return page[:size], _encode_token([last.created_at.isoformat(), last.organization_id])

    async def set_retention(
        self, authorization: str | None, organization_id: str, retention_days: int
    ) -> OrganizationRecord:
        """Set how many days the organization's data is kept."""
        await self._admit(authorization, "SetRetention", organization_id, "retention")
        updated = await self._directory.set_retention(organization_id, retention_days)
        if updated is None:
            raise NotFound(ORGANIZATION_NOT_FOUND)
        return updated

    # API keys

    async def _issue(
        self, organization_id: str, kind: ApiKeyKind, origins: Sequence[str], label: str
    ) -> IssuedKey:
        key_id, secret = await self._api_keys.create(organization_id, kind, origins, label)
        record = await self._lifecycle.find(organization_id, key_id)
        if record is None:  # pragma: no cover - just inserted
            raise NotFound(KEY_NOT_FOUND)
        return IssuedKey(record, secret)

    async def create_api_key(
        self,
        authorization: str | None,
        organization_id: str,
        kind: ApiKeyKind,
        allowed_origins: Sequence[str] = (),
        label: str = "",
    ) -> IssuedKey:
        """Create a key; its text is returned once."""
        await self._admit(authorization, "CreateApiKey", organization_id, "api-keys")
        await self._organization(organization_id)
        return await self._issue(organization_id, kind, allowed_origins, label)

    async def list_api_keys(
        self, authorization: str | None, organization_id: str, include_inactive: bool = False
    ) -> list[ApiKeyRecord]:
        """Return the organization's keys, newest first, without their text."""
        await self._admit(authorization, "ListApiKeys", organization_id, "api-keys")
        await self._organization(organization_id)
        keys = await self._api_keys.list_for_organization(organization_id)
        now = datetime.now(UTC)
        return [k for k in reversed(keys) if include_inactive or _is_active(k, now)]

    async def revoke_api_key(
        self, authorization: str | None, organization_id: str, key_id: str
    ) -> ApiKeyRecord:
        """Revoke a key at once; revoking a revoked key returns it unchanged."""
        await self._admit(authorization, "RevokeApiKey", organization_id, "api-keys", key_id)
        await self._organization(organization_id)
        await self._api_keys.revoke(organization_id, key_id)
        record = await self._lifecycle.find(organization_id, key_id)
        if record is None:
            raise NotFound(KEY_NOT_FOUND)
        return record

    async def rotate_api_key(
        self,
        authorization: str | None,
        organization_id: str,
        key_id: str,
        overlap: timedelta | None = None,
    ) -> tuple[IssuedKey, ApiKeyRecord]:
        """Issue a replacement key; the old one expires after the overlap window."""
        await self._admit(authorization, "RotateApiKey", organization_id, "api-keys", key_id)
        await self._organization(organization_id)
        old = await self._lifecycle.find(organization_id, key_id)
        if old is None or not _is_active(old, datetime.now(UTC)):
            raise NotFound(KEY_NOT_FOUND)
        new = await self._issue(organization_id, old.kind, old.allowed_origins, old.label)
        expires = datetime.now(UTC) + (overlap or self._default_overlap)
        expired = await self._lifecycle.expire_active(organization_id, key_id, expires)
        if expired is None:
            # Revoked or expired meanwhile: no replacement for a key that is gone.
            await self._api_keys.revoke(organization_id, new.record.key_id)
            raise NotFound(KEY_NOT_FOUND)
        return new, expired

    # Encryption keys

    async def get_encryption_key(
        self, authorization: str | None, organization_id: str
    ) -> EncryptionKeyRecord:
        """Return the organization's current public key for encrypted batches."""
        await self._admit(authorization, "GetEncryptionKey", organization_id, "encryption-key")
        await self._organization(organization_id)
        current = await self._encryption_keys.find_current(organization_id)
        if current is None:
            raise NotFound("the organization has no encryption key")
        return current

    async def rotate_encryption_key(
        self, authorization: str | None, organization_id: str, overlap: timedelta | None = None
    ) -> EncryptionKeyRecord:
        """Generate a new key pair; older private keys keep decrypting for the overlap."""
        await self._admit(authorization, "RotateEncryptionKey", organization_id, "encryption-key")
        await self._organization(organization_id)
        public = await self._encryption_keys.create(organization_id)
        expires = datetime.now(UTC) + (overlap or self._default_overlap)
        await self._lifecycle.expire_encryption_keys(organization_id, str(public["kid"]), expires)
        current = await self._encryption_keys.find_current(organization_id)
        if current is None:  # pragma: no cover - just created
            raise NotFound("the organization has no encryption key")
        return current

    # Audit

    async def list_audit_events(
        self,
        authorization: str | None,
        organization_id: str,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[AuditEntry], str]:
        """Return a page of the organization's audit log, newest first."""
        await self._admit(authorization, "ListAuditEvents", organization_id, "audit-events")
        await self._organization(organization_id)
        before: int | None = None
        if page_token:
            cursor = _decode_token(page_token)
            if not isinstance(cursor, int):
                raise _bad_token()
            before = cursor
        size = self._paging.size(page_size)
        entries = await self._audit.list_for_organization(organization_id, size + 1, before)
        if len(entries) <= size:
            return entries, ""
        return entries[:size], _encode_token(entries[size - 1].seq)
