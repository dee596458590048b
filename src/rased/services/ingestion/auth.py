"""Credentials of ingestion callers: session tokens, publishable keys and secret keys.

`authorization: Bearer <credential>`, where the credential is
- `rsd_pk_...`: a publishable key (ingest only, from its allowed origins when it has any);
- `rsd_sk_...`: a secret key (only where `authenticate_secret` asks for one);
- anything else: a session token (JWT) minted by SessionService.CreateSession.

Key lookups that succeed are cached in process for `key_cache_ttl` (seconds), so the hot path
does not query PostgreSQL for every batch. The price: a revoked key keeps working in a
process for at most that long. Expiry times are checked on every call, cached or not.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import UTC, datetime, timedelta

from rased.adapters.postgres.keys import ApiKeyKind, ApiKeyRecord, ApiKeyStore, hash_secret
from rased.common.errors import Unauthenticated
from rased.services.ingestion.ports import Caller, CredentialKind
from rased.services.ingestion.sessions import SessionTokens

logger = logging.getLogger(__name__)

_REFUSED = "invalid or expired credential"
_BEARER = re.compile(r"^Bearer +(?P<credential>\S+) *$", re.IGNORECASE)
# The exact shape ApiKeyStore.create produces: anything else is refused without a query.
_API_KEY = re.compile(r"^rsd_(?:pk|sk)_[A-Za-z0-9_-]{43}$")
_CACHE_MAX_ENTRIES = 10_000
_CREDENTIAL_KINDS = {
    ApiKeyKind.PUBLISHABLE: CredentialKind.PUBLISHABLE_KEY,
    ApiKeyKind.SECRET: CredentialKind.SECRET_KEY,
}


class TokenAuthenticator:
    """Checks the `authorization` metadata against session tokens and stored API keys."""

    def __init__(
        self,
        api_keys: ApiKeyStore,
        tokens: SessionTokens,
        key_cache_ttl: timedelta = timedelta(seconds=5),
    ) -> None:
        self._api_keys = api_keys
        self._tokens = tokens
        self._ttl = key_cache_ttl.total_seconds()
        # SHA-256 of the key -> (record, monotonic deadline); the key itself is not kept.
        self._cache: dict[bytes, tuple[ApiKeyRecord, float]] = {}
        # One lookup per key at a time: a burst of batches with an uncached key (at start-up,
        # or when its entry lapses) makes one query, not one per batch.
        self._inflight: dict[bytes, asyncio.Task[ApiKeyRecord | None]] = {}

    async def authenticate_ingest(self, authorization: str | None, origin: str | None) -> Caller:
        """Accept a session token or a publishable key (from an allowed origin)."""
        credential = _bearer(authorization)
        if credential.startswith(ApiKeyKind.SECRET.marker):
            # Said plainly: it comes from the prefix alone and tells nothing about validity.
            logger.info("ingest refused: a secret key was sent")
            raise Unauthenticated("secret keys cannot ingest; use a session token")
        if not credential.startswith(ApiKeyKind.PUBLISHABLE.marker):
            return self._tokens.verify(credential)
        record = await self._active_key(credential, ApiKeyKind.PUBLISHABLE)
        # Origins keep a publishable key copied from one site from working on another in
        # browsers; a non-browser client can send any origin, so this is not an identity.
        if record.allowed_origins and origin not in record.allowed_origins:
            logger.info("ingest refused: origin not allowed for key %s", record.key_id)
            raise Unauthenticated(_REFUSED)
        return _caller(record)

    async def authenticate_secret(self, authorization: str | None) -> Caller:
        """Accept only a secret API key."""
        credential = _bearer(authorization)
        if not credential.startswith(ApiKeyKind.SECRET.marker):
            logger.info("secret-key call refused: another kind of credential was sent")
            raise Unauthenticated("a secret API key is required")
        return _caller(await self._active_key(credential, ApiKeyKind.SECRET))

    async def _active_key(self, credential: str, kind: ApiKeyKind) -> ApiKeyRecord:
        """Return the active key of this kind with this text; raise Unauthenticated."""
        if not _API_KEY.match(credential):
            logger.info("key refused: malformed %s key", kind.value)
            raise Unauthenticated(_REFUSED)
        digest = hash_secret(credential)
        now = time.monotonic()
        cached = self._cache.get(digest)
        record = cached[0] if cached is not None and cached[1] > now else None
        if record is None:
            record = await self._lookup(digest, credential)
            if record is not None:
                self._remember(digest, record, now)
        if record is None:
            logger.info("key refused: unknown, revoked or expired %s key", kind.value)
            raise Unauthenticated(_REFUSED)
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            self._cache.pop(digest, None)
            logger.info("key refused: key %s expired", record.key_id)
            raise Unauthenticated(_REFUSED)
        if record.kind is not kind:
            # Cannot happen with keys made by ApiKeyStore (the kind is in the prefix).
            logger.warning("key refused: key %s is stored as %s", record.key_id, record.kind)
            raise Unauthenticated(_REFUSED)
        return record

    async def _lookup(self, digest: bytes, credential: str) -> ApiKeyRecord | None:
        """Query the store, sharing one query among concurrent callers with the same key."""
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.create_task(self._api_keys.find_active(credential))
            self._inflight[digest] = task
            task.add_done_callback(lambda _: self._inflight.pop(digest, None))
        # Shielded: a caller that gives up (deadline, cancellation) does not cancel the
        # query the others are waiting for.
        return await asyncio.shield(task)

    def _remember(self, digest: bytes, record: ApiKeyRecord, now: float) -> None:
        """Cache a found key, keeping the cache bounded."""
        if len(self._cache) >= _CACHE_MAX_ENTRIES:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            if len(self._cache) >= _CACHE_MAX_ENTRIES:
                self._cache.clear()
        self._cache[digest] = (record, now + self._ttl)


def _bearer(authorization: str | None) -> str:
    """Return the credential of `Bearer <credential>`; raise Unauthenticated otherwise."""
    match = _BEARER.match(authorization or "")
    if match is None:
        logger.info("credential refused: no bearer credential")
        raise Unauthenticated("missing bearer credential")
    return match["credential"]


def _caller(record: ApiKeyRecord) -> Caller:
    return Caller(
        organization_id=record.organization_id,
        credential=_CREDENTIAL_KINDS[record.kind],
        key_id=record.key_id,
    )
