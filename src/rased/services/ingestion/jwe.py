"""Encrypted event batches: compact JWE (ECDH-ES+A256KW, A256GCM) to the organization's key.

The algorithms are pinned: a JWE naming anything else (RSA1_5, `dir`, PBES2, another `enc`,
or compression, whose output size the sender controls) is refused before any key is used.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from datetime import timedelta
from typing import Any

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from rased.adapters.postgres.keys import JWE_ALGORITHM, JWE_ENCRYPTION, EncryptionKeyStore
from rased.common.errors import DecryptionFailed

logger = logging.getLogger(__name__)

_PINNED = (JWE_ALGORITHM, JWE_ENCRYPTION)
_MAX_HEADER_CHARS = 1024
_CACHE_MAX_ENTRIES = 10_000


def encrypt_for(public_jwk: dict[str, Any] | str, plaintext: bytes) -> str:
    """Encrypt `plaintext` to an organization's public JWK as the SDK does; return compact JWE."""
    jwk = json.loads(public_jwk) if isinstance(public_jwk, str) else public_jwk
    key = ECKey.import_key(jwk)
    header = {"alg": JWE_ALGORITHM, "enc": JWE_ENCRYPTION, "kid": jwk["kid"]}
    return jwe.encrypt_compact(header, plaintext, key, algorithms=_PINNED)


class OrgKeyDecryptor:
    """Opens JWE batches with the caller's organization's private key (BatchDecryptor).

    Private keys are cached in process for `key_cache_ttl` so the hot path does not unseal
    a key per batch; a key that expires or is deleted stops decrypting within that time.
    """

    def __init__(
        self,
        keys: EncryptionKeyStore,
        *,
        max_ciphertext_bytes: int = 4 * 1024 * 1024,
        key_cache_ttl: timedelta = timedelta(seconds=30),
    ) -> None:
        self._keys = keys
        self._registry = jwe.JWERegistry(algorithms=list(_PINNED))
        # joserfc refuses ciphertexts over 64 KiB by default; the batch limits decide here.
        self._registry.max_ciphertext_length = max_ciphertext_bytes
        self._ttl = key_cache_ttl.total_seconds()
        self._cache: dict[tuple[str, str], tuple[ECKey, float]] = {}

    async def decrypt(self, organization_id: str, compact_jwe: str) -> bytes:
        """Return the plaintext; raise DecryptionFailed for anything that does not open.

        Raises:
            DecryptionFailed: malformed, other algorithms, unknown `kid` (or another
                organization's), wrong key or tampered.
            DependencyUnavailable: the key store cannot be reached (the caller may retry).
            SealError: the stored private key does not open with the master keys (an
                operator's problem, reported as an internal error).
        """
        kid = _pinned_kid(compact_jwe)
        key = await self._private_key(organization_id, kid)
        if key is None:
            logger.info("JWE refused: no key %.64s for organization %s", kid, organization_id)
            raise DecryptionFailed("unknown key id")
        try:
            message = jwe.decrypt_compact(compact_jwe, key, registry=self._registry)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            logger.info("JWE refused: %s", type(exc).__name__)
            raise DecryptionFailed("decryption failed: wrong key or tampered") from None
        if message.plaintext is None:
            raise DecryptionFailed("decryption failed: empty")
        return message.plaintext

    async def _private_key(self, organization_id: str, kid: str) -> ECKey | None:
        """Return the private key from the cache or the store (positive results cached)."""
        now = time.monotonic()
        cached = self._cache.get((organization_id, kid))
        if cached is not None and cached[1] > now:
            return cached[0]
        key = await self._keys.find_private(organization_id, kid)
        if key is None:
            self._cache.pop((organization_id, kid), None)
            return None
        if len(self._cache) >= _CACHE_MAX_ENTRIES:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            if len(self._cache) >= _CACHE_MAX_ENTRIES:
                self._cache.clear()
        self._cache[(organization_id, kid)] = (key, now + self._ttl)
        return key


def _pinned_kid(compact_jwe: str) -> str:
    """Check the protected header (five parts, pinned algorithms, no zip) and return its kid."""
    parts = compact_jwe.split(".") if isinstance(compact_jwe, str) else []
    if len(parts) != 5 or len(parts[0]) > _MAX_HEADER_CHARS:
        raise DecryptionFailed("malformed compact JWE")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error):
        raise DecryptionFailed("malformed compact JWE header") from None
    if not isinstance(header, dict):
        raise DecryptionFailed("malformed compact JWE header")
    if (header.get("alg"), header.get("enc")) != _PINNED or "zip" in header:
        raise DecryptionFailed(f"only alg {JWE_ALGORITHM} with enc {JWE_ENCRYPTION} is accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise DecryptionFailed("missing key id (kid)")
    return kid
