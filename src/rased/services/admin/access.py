"""Who may call the admin API, for which organization, and the audit of every decision.

`authorization: Bearer <credential>`, where the credential is
- the operator token (from settings): may do everything;
- a secret key `rsd_sk_...`: may manage only its own organization; naming any other
  organization is answered NOT_FOUND, exactly as for an organization that does not exist;
- a publishable key `rsd_pk_...`: valid, but never for administration (PERMISSION_DENIED);
- anything else (session tokens included): UNAUTHENTICATED.

Keys are looked up on every call (no cache): a revoked key stops administering at once.
"""

from __future__ import annotations

import enum
import hmac
import logging
import re
import uuid
from dataclasses import dataclass

from rased.adapters.postgres.audit import AuditLog, AuditOutcome
from rased.adapters.postgres.keys import ApiKeyKind, ApiKeyStore
from rased.common.errors import NotFound, PermissionDenied, RasedError, Unauthenticated

logger = logging.getLogger(__name__)

OPERATOR = "operator"
ANONYMOUS = "anonymous"
ORGANIZATION_NOT_FOUND = "organization not found"

_REFUSED = "invalid or expired credential"
_BEARER = re.compile(r"^Bearer +(?P<credential>\S+) *$", re.IGNORECASE)
_API_KEY = re.compile(r"^rsd_(?:pk|sk)_[A-Za-z0-9_-]{43}$")


class PrincipalKind(enum.Enum):
    """How an admin caller proved who it is."""

    OPERATOR = "operator"
    SECRET_KEY = "secret_key"  # noqa: S105 - names a kind of credential
    PUBLISHABLE_KEY = "publishable_key"


@dataclass(frozen=True)
class Principal:
    """An authenticated admin caller."""

    kind: PrincipalKind
    actor: str  # "operator" or the key id: what the audit log names
    organization_id: str | None = None  # the key's organization; None for the operator

    @property
    def is_operator(self) -> bool:
        """Return whether the caller holds the operator credential."""
        return self.kind is PrincipalKind.OPERATOR


class AdminAuthenticator:
    """Turns the `authorization` metadata into a Principal; raises Unauthenticated."""

    def __init__(self, api_keys: ApiKeyStore, operator_token: str) -> None:
        self._api_keys = api_keys
        self._operator_token = operator_token.encode("utf-8")

    async def authenticate(self, authorization: str | None) -> Principal:
        """Return who is calling."""
        match = _BEARER.match(authorization or "")
        if match is None:
            raise Unauthenticated("missing bearer credential")
        credential = match["credential"]
        if credential.startswith(("rsd_pk_", "rsd_sk_")):
            if not _API_KEY.match(credential):
                raise Unauthenticated(_REFUSED)
            record = await self._api_keys.find_active(credential)
            if record is None:
                raise Unauthenticated(_REFUSED)
            kind = (
                PrincipalKind.SECRET_KEY
                if record.kind is ApiKeyKind.SECRET
                else PrincipalKind.PUBLISHABLE_KEY
            )
            return Principal(kind, record.key_id, record.organization_id)
        # Constant time: the comparison must not tell how much of a guess was right.
        if hmac.compare_digest(credential.encode("utf-8"), self._operator_token):
            return Principal(PrincipalKind.OPERATOR, OPERATOR)
        raise Unauthenticated(_REFUSED)


def same_organization(a: str, b: str) -> bool:
    """Return whether two organization ids name the same UUID (case and form aside)."""
    try:
        return uuid.UUID(a) == uuid.UUID(b)
    except ValueError:
        return False


class AccessControl:
    """Decides each admin call and writes the decision to the audit log."""

    def __init__(self, authenticator: AdminAuthenticator, audit: AuditLog) -> None:
        self._authenticator = authenticator
        self._audit = audit

    async def admit(
        self,
        authorization: str | None,
        action: str,
        *,
        organization_id: str | None = None,
        target: str = "",
        operator_only: bool = False,
    ) -> Principal:
        """Return the caller if it may do `action` on `organization_id`; raise otherwise.

        Raises:
            Unauthenticated: no valid credential.
            PermissionDenied: a publishable key, or a key calling an operator-only action.
            NotFound: a key naming another organization (as if it did not exist).
        """
        try:
            principal = await self._authenticator.authenticate(authorization)
        except Unauthenticated:
            await self._record(
                None, ANONYMOUS, action, target, AuditOutcome.DENIED, "unauthenticated"
            )
            raise
        denial = _denial(principal, organization_id, operator_only)
        # A key's decisions go to its own organization's log (never to the organization it
        # named, which would tell that organization about another tenant's key); the
        # operator's go to the organization acted on.
        log_org = organization_id if principal.is_operator else principal.organization_id
        if denial is None:
            await self._record(log_org, principal.actor, action, target, AuditOutcome.ALLOWED)
            return principal
        reason, error = denial
        await self._record(log_org, principal.actor, action, target, AuditOutcome.DENIED, reason)
        logger.info("admin call denied: %s %s (%s)", principal.actor, action, reason)
        raise error

    async def _record(
        self,
        organization_id: str | None,
        actor: str,
        action: str,
        target: str,
        outcome: AuditOutcome,
        reason: str = "",
    ) -> None:
        await self._audit.record(
            organization_id=organization_id,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            reason=reason,
        )


def _denial(
    principal: Principal, organization_id: str | None, operator_only: bool
) -> tuple[str, RasedError] | None:
    """Return (reason, error) when the principal may not act, None when it may."""
    if principal.is_operator:
        return None
    if principal.kind is PrincipalKind.PUBLISHABLE_KEY:
        return "publishable_key", PermissionDenied("publishable keys cannot use the admin API")
    if operator_only:
        return "operator_only", PermissionDenied("only the operator may do this")
    if principal.organization_id is None or organization_id is None:
        return "operator_only", PermissionDenied("only the operator may do this")
    if not same_organization(organization_id, principal.organization_id):
        return "other_organization", NotFound(ORGANIZATION_NOT_FOUND)
    return None
