"""Organizations, hashed API keys and sealed JWE key pairs in PostgreSQL (asyncpg)."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from joserfc.jwk import ECKey

from rased.common.crypto import Keyring
from rased.common.errors import DependencyUnavailable, FieldViolation, NotFound, ValidationFailed

# The JWE algorithms every organization key pair is made for; decryption pins the same pair.
JWE_ALGORITHM = "ECDH-ES+A256KW"
JWE_ENCRYPTION = "A256GCM"
JWE_CURVE = "P-256"

_SECRET_BYTES = 32  # 256 bits from secrets.token_urlsafe: 43 URL-safe characters
_PREFIX_RANDOM_CHARS = 6  # shown in listings; leaves 220 bits unknown
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s]+$")

# Connection-level failures: PostgreSQL is down or unreachable, the caller may retry.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
)


@asynccontextmanager
async def _postgres_errors() -> AsyncIterator[None]:
    """Turn connection failures into DependencyUnavailable (UNAVAILABLE, retryable)."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise DependencyUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}") from exc


def _parse_uuid(value: str) -> uuid.UUID | None:
    """Return the UUID, or None for text that is not one (ids come from callers)."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


class OrganizationStore:
    """Creates organizations (the tenants); the admin API builds on it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, name: str, retention_days: int = 90) -> str:
        """Create an organization and return its id."""
        org_id = uuid.uuid4()
        async with _postgres_errors():
            await self._pool.execute(
                "INSERT INTO organizations (id, name, retention_days) VALUES ($1, $2, $3)",
                org_id,
                name,
                retention_days,
            )
        return str(org_id)


class ApiKeyKind(enum.StrEnum):
    """The two kinds of API key, as stored in `api_keys.kind`."""

    PUBLISHABLE = "publishable"
    SECRET = "secret"  # noqa: S105 - the name of a kind, not a secret

    @property
    def marker(self) -> str:
        """Return the text every key of this kind starts with."""
        return "rsd_pk_" if self is ApiKeyKind.PUBLISHABLE else "rsd_sk_"


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as stored: everything but the key itself."""

    key_id: str
    organization_id: str
    kind: ApiKeyKind
    prefix: str
    allowed_origins: tuple[str, ...]
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def hash_secret(secret: str) -> bytes:
    """Return the SHA-256 of an API key, as stored in `api_keys.key_hash`.

    A fast, unsalted hash is right here: keys are 256-bit random strings, so neither
    brute force nor precomputed tables can find one from its hash (the slow, salted
    hashes made for passwords guard low-entropy secrets, and would put a deliberate
    ~100 ms on every uncached authentication).
    """
    return hashlib.sha256(secret.encode("utf-8")).digest()


_KEY_COLUMNS = (
    "key_id, organization_id, kind, prefix, allowed_origins, label, "
    "created_at, expires_at, revoked_at"
)


def _key_record(row: asyncpg.Record) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=str(row["key_id"]),
        organization_id=str(row["organization_id"]),
        kind=ApiKeyKind(row["kind"]),
        prefix=row["prefix"],
        allowed_origins=tuple(row["allowed_origins"]),
        label=row["label"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


class ApiKeyStore:
    """API keys of organizations, stored as SHA-256 hashes (the key is shown once)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        organization_id: str,
        kind: ApiKeyKind | str,
        allowed_origins: Iterable[str] = (),
        label: str = "",
        expires_at: datetime | None = None,
    ) -> tuple[str, str]:
        """Create a key and return (key id, the key itself); only its hash is stored.

        Raises:
            ValidationFailed: allowed origins on a secret key, or an origin that is not
                `scheme://host[:port]`.
            NotFound: the organization does not exist.
        """
        kind = ApiKeyKind(kind)
        origins = list(allowed_origins)
        violations = [
            FieldViolation(
                field=f"allowed_origins[{index}]",
                description="must be an origin: scheme://host[:port], lower case, no path",
                rule="origin",
            )
            for index, origin in enumerate(origins)
            if not _ORIGIN.match(origin)
        ]
        if origins and kind is ApiKeyKind.SECRET:
            violations.append(
                FieldViolation(
                    field="allowed_origins",
                    description="only publishable keys are used from browsers",
                    rule="secret_key_origins",
                )
            )
        if violations:
            raise ValidationFailed(violations)
        org = _parse_uuid(organization_id)
        if org is None:
            raise NotFound("organization not found")
        secret = kind.marker + secrets.token_urlsafe(_SECRET_BYTES)
        key_id = uuid.uuid4()
        try:
            async with _postgres_errors():
                await self._pool.execute(
                    "INSERT INTO api_keys (key_id, organization_id, kind, key_hash, prefix, "
                    "allowed_origins, label, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    key_id,
                    org,
                    kind.value,
                    hash_secret(secret),
                    secret[: len(kind.marker) + _PREFIX_RANDOM_CHARS],
                    origins,
                    label,
                    expires_at,
                )
        except asyncpg.ForeignKeyViolationError:
            raise NotFound("organization not found") from None
        return str(key_id), secret

    async def find_active(self, secret: str) -> ApiKeyRecord | None:
        """Return the key with this text if it exists, is not revoked and has not expired."""
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 "  # noqa: S608 - constant columns
                "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
                hash_secret(secret),
            )
        return None if row is None else _key_record(row)

    async def list_for_organization(self, organization_id: str) -> list[ApiKeyRecord]:
        """Return every key of an organization (revoked ones too), oldest first."""
        org = _parse_uuid(organization_id)
        if org is None:
            return []
        async with _postgres_errors():
            rows = await self._pool.fetch(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE organization_id = $1 "  # noqa: S608 - constant columns
                "ORDER BY created_at, key_id",
                org,
            )
        return [_key_record(row) for row in rows]

    async def revoke(self, organization_id: str, key_id: str) -> bool:
        """Revoke one of the organization's keys; return False if it has no such active key."""
        org, key = _parse_uuid(organization_id), _parse_uuid(key_id)
        if org is None or key is None:
            return False
        async with _postgres_errors():
            status = await self._pool.execute(
                "UPDATE api_keys SET revoked_at = now() "
                "WHERE key_id = $1 AND organization_id = $2 AND revoked_at IS NULL",
                key,
                org,
            )
        return bool(status == "UPDATE 1")


@dataclass(frozen=True)
class EncryptionKeyRecord:
    """An organization's public key for encrypted batches, as handed to the SDK."""

    key_id: str
    organization_id: str
    algorithm: str
    encryption: str
    public_jwk: dict[str, Any]
    created_at: datetime
    expires_at: datetime | None


def _sealing_context(org: uuid.UUID, key: uuid.UUID) -> bytes:
    """Return the associated data binding a sealed private key to its organization and id."""
    return f"rased.encryption_keys:{org}:{key}".encode("ascii")


class EncryptionKeyStore:
    """Organizations' EC P-256 key pairs for JWE batches; private keys sealed at rest."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring) -> None:
        self._pool = pool
        self._keyring = keyring

    async def create(
        self, organization_id: str, expires_at: datetime | None = None
    ) -> dict[str, Any]:
        """Generate a key pair for ECDH-ES+A256KW / A256GCM and return its public JWK.

        Raises:
            NotFound: the organization does not exist.
        """
        org = _parse_uuid(organization_id)
        if org is None:
            raise NotFound("organization not found")
        key_id = uuid.uuid4()
        private = ECKey.generate_key(
            JWE_CURVE,
            parameters={"kid": str(key_id), "alg": JWE_ALGORITHM, "use": "enc"},
            private=True,
        )
        public_jwk = private.as_dict(private=False)
        sealed = self._keyring.seal(
            json.dumps(private.as_dict(private=True), sort_keys=True).encode("utf-8"),
            _sealing_context(org, key_id),
        )
        try:
            async with _postgres_errors():
                await self._pool.execute(
                    "INSERT INTO encryption_keys (key_id, organization_id, algorithm, encryption, "
                    "public_jwk, private_jwk_sealed, master_key_id, expires_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    key_id,
                    org,
                    JWE_ALGORITHM,
                    JWE_ENCRYPTION,
                    json.dumps(public_jwk, sort_keys=True),
                    sealed,
                    self._keyring.primary_key_id,
                    expires_at,
                )
        except asyncpg.ForeignKeyViolationError:
            raise NotFound("organization not found") from None
        return dict(public_jwk)

    async def find_current(self, organization_id: str) -> EncryptionKeyRecord | None:
        """Return the organization's newest unexpired public key, if it has one."""
        org = _parse_uuid(organization_id)
        if org is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                "SELECT key_id, organization_id, algorithm, encryption, public_jwk, created_at, "
                "expires_at FROM encryption_keys WHERE organization_id = $1 "
                "AND (expires_at IS NULL OR expires_at > now()) "
                "ORDER BY created_at DESC, key_id LIMIT 1",
                org,
            )
        if row is None:
            return None
        return EncryptionKeyRecord(
            key_id=str(row["key_id"]),
            organization_id=str(row["organization_id"]),
            algorithm=row["algorithm"],
            encryption=row["encryption"],
            public_jwk=json.loads(row["public_jwk"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
        )

    async def find_private(self, organization_id: str, key_id: str) -> ECKey | None:
        """Return the organization's unexpired private key with this id, or None.

        A key id of another organization is not found: the lookup is by both.

        Raises:
            SealError: the sealed key cannot be opened with the configured master keys
                (a master key was dropped too early, or the row was tampered with).
        """
        org, key = _parse_uuid(organization_id), _parse_uuid(key_id)
        if org is None or key is None:
            return None
        async with _postgres_errors():
            sealed = await self._pool.fetchval(
                "SELECT private_jwk_sealed FROM encryption_keys "
                "WHERE organization_id = $1 AND key_id = $2 "
                "AND (expires_at IS NULL OR expires_at > now())",
                org,
                key,
            )
        if sealed is None:
            return None
        jwk = json.loads(self._keyring.open(sealed, _sealing_context(org, key)))
        return ECKey.import_key(jwk)
