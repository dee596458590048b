"""Session tokens: short-lived JWTs scoped to one organization and one session.

HS256 (HMAC-SHA256) because the same service mints and verifies them, so one shared
secret suffices and verification costs microseconds. Should verification move to another
party (the edge, a client's backend), switch to EdDSA so that only the issuer holds the
signing key and verifiers get a public key.

The algorithm is pinned: a token whose header names any other algorithm (`none`, HS512,
RS256 for key-confusion attacks) is refused before its signature is looked at.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jws import JWSRegistry

from rased.common.errors import FieldViolation, Unauthenticated, ValidationFailed
from rased.services.ingestion.ports import Caller, CredentialKind

logger = logging.getLogger(__name__)

ALGORITHM = "HS256"
MIN_KEY_BYTES = 32  # HS256 keys shorter than the hash output weaken it (RFC 7518, 3.2)
_REFUSED = "invalid or expired credential"
_REQUIRED_CLAIMS = ("iss", "aud", "sub", "org", "iat", "nbf", "exp", "jti")
# Verified tokens remembered at once; past it, lapsed entries go, then (a flood) all of them.
_VERIFIED_MAX_ENTRIES = 10_000


def key_id_of(key: bytes) -> str:
    """Return the `kid` naming a signing key: a hash that reveals nothing of the key."""
    digest = hashlib.sha256(b"rased.session-token.kid\x00" + key).digest()
    return base64.urlsafe_b64encode(digest[:9]).decode("ascii")


class SessionTokens:
    """Mints and verifies session tokens (HS256, iss/aud/exp checked, algorithm pinned).

    `previous_keys` still verify but never sign: rotating the signing key means moving the
    old one there for one `max_ttl`, so tokens already handed out keep working.

    A token that verified is remembered until its expiry (plus the leeway): the SDK sends
    the same token with every batch, and signature and claims checks were a tenth of the
    ingestion path's CPU. Nothing else about a verified token can change with time (the
    keys are fixed for the object's life; `nbf` and `iat`, once passed, stay passed), so
    the answer is the one a full check would give.
    """

    def __init__(
        self,
        signing_key: bytes,
        *,
        previous_keys: Sequence[bytes] = (),
        issuer: str = "rased",
        audience: str = "rased-ingest",
        default_ttl: timedelta = timedelta(minutes=15),
        max_ttl: timedelta = timedelta(minutes=60),
        leeway: timedelta = timedelta(seconds=30),
        clock: Callable[[], float] = time.time,
    ) -> None:
        for key in (signing_key, *previous_keys):
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"session signing keys need at least {MIN_KEY_BYTES} bytes")
        if not timedelta(0) < default_ttl <= max_ttl:
            raise ValueError("session token TTLs need 0 < default_ttl <= max_ttl")
        self._signing_kid = key_id_of(signing_key)
        self._keys = {key_id_of(key): OctKey.import_key(key) for key in previous_keys}
        self._keys[self._signing_kid] = OctKey.import_key(signing_key)
        self._issuer = issuer
        self._audience = audience
        self._default_ttl = default_ttl
        self._max_ttl = max_ttl
        self._leeway = int(leeway.total_seconds())
        self._clock = clock
        self._registry = JWSRegistry(algorithms=[ALGORITHM])
        # token -> (caller, the last second it is valid: exp + leeway)
        self._verified: dict[str, tuple[Caller, int]] = {}
        self._claims = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=self._leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            org={"essential": True},
            iat={"essential": True},
            nbf={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
        )

    def issue(
        self,
        organization_id: str,
        session_id: str,
        user_id: str | None,
        ttl: timedelta | None,
    ) -> tuple[str, datetime]:
        """Return a token scoped to org + session (and user, if given), and its expiry.

        Raises:
            ValidationFailed: a TTL that is not positive or exceeds the maximum.
        """
        if not (organization_id and session_id):
            # Such a token would never verify: fail where the mistake is made.
            raise ValueError("a session token needs an organization id and a session id")
        lifetime = self._default_ttl if ttl is None or ttl == timedelta(0) else ttl
        if not timedelta(0) < lifetime <= self._max_ttl:
            raise ValidationFailed(
                [
                    FieldViolation(
                        field="ttl_seconds",
                        description=(
                            f"must be between 1 and {int(self._max_ttl.total_seconds())} seconds"
                        ),
                        rule="ttl",
                    )
                ]
            )
        now = int(self._clock())
        expires = now + int(lifetime.total_seconds())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": session_id,
            "org": organization_id,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": secrets.token_urlsafe(16),
        }
        if user_id:
            claims["uid"] = user_id
        token = jwt.encode(
            {"alg": ALGORITHM, "kid": self._signing_kid},
            claims,
            self._keys[self._signing_kid],
            registry=self._registry,
        )
        return token, datetime.fromtimestamp(expires, UTC)

    def verify(self, token: str) -> Caller:
        """Return the caller a valid token stands for; raise Unauthenticated otherwise."""
        remembered = self._verified.get(token)
        if remembered is not None:
            if int(self._clock()) <= remembered[1]:
                return remembered[0]
            del self._verified[token]
        try:
            decoded = jwt.decode(token, self._select_key, registry=self._registry)
            self._claims.validate(decoded.claims)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            # The reason helps operators; the caller learns only that the token is no good.
            logger.info("session token refused: %s", _reason(exc))
            raise Unauthenticated(_REFUSED) from None
        claims = decoded.claims
        org, session, user = claims["org"], claims["sub"], claims.get("uid")
        if not (isinstance(org, str) and org and (user is None or isinstance(user, str))):
            logger.info("session token refused: malformed org or uid claim")
            raise Unauthenticated(_REFUSED)
        caller = Caller(
            organization_id=org,
            credential=CredentialKind.SESSION_TOKEN,
            session_id=session,
            user_id=user or None,
        )
        self._remember(token, caller, int(claims["exp"]) + self._leeway)
        return caller

    def _remember(self, token: str, caller: Caller, valid_until: int) -> None:
        """Keep a verified token's caller until `valid_until`, the cache staying bounded."""
        if len(self._verified) >= _VERIFIED_MAX_ENTRIES:
            now = int(self._clock())
            self._verified = {t: v for t, v in self._verified.items() if v[1] >= now}
            if len(self._verified) >= _VERIFIED_MAX_ENTRIES:
                self._verified.clear()
        self._verified[token] = (caller, valid_until)

    def _select_key(self, token: Any) -> OctKey:
        """Pick the verifying key named by the header's kid (raise KeyError if none)."""
        kid = token.headers().get("kid")
        if not isinstance(kid, str) or kid not in self._keys:
            raise KeyError("unknown kid")
        return self._keys[kid]


def _reason(exc: Exception) -> str:
    """Return a short description of why a token failed, without the token."""
    if isinstance(exc, JoseError):
        return f"{exc.error}: {exc.description}" if exc.description else exc.error
    return type(exc).__name__
