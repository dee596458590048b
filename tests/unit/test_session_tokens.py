"""Session tokens: a good token names its caller; every forged or stale one is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from rased.common.errors import Unauthenticated, ValidationFailed
from rased.services.ingestion.ports import Caller, CredentialKind, SessionTokenIssuer
from rased.services.ingestion.sessions import SessionTokens, key_id_of

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
T0 = 1_800_000_000.0
ORG = "0b9c6f1e-3d0a-4c55-9a43-4f0f6b1d2e11"


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """Build a compact JWS by hand (as an attacker would), with any header and signature."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(signature)}"


def _hs(header: dict[str, Any], claims: dict[str, Any], key: bytes, digest: Any) -> str:
    """Sign a hand-built token with HMAC (any hash) under `key`."""
    unsigned = _forge(header, claims).rsplit(".", 1)[0]
    return f"{unsigned}.{_b64(hmac.new(key, unsigned.encode(), digest).digest())}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(clock: Clock) -> SessionTokens:
    return SessionTokens(KEY, clock=clock)


def _claims(tokens: SessionTokens) -> dict[str, Any]:
    token, _ = tokens.issue(ORG, "sess-1", "user-7", None)
    return dict(json.loads(_unb64(token.split(".")[1])))


def test_a_good_token_names_org_session_and_user(tokens: SessionTokens) -> None:
    """An issued token verifies to the caller it was minted for."""
    issuer: SessionTokenIssuer = tokens
    token, expires = issuer.issue(ORG, "sess-1", "user-7", None)

    assert tokens.verify(token) == Caller(
        organization_id=ORG,
        credential=CredentialKind.SESSION_TOKEN,
        session_id="sess-1",
        user_id="user-7",
    )
    assert expires.timestamp() == T0 + 15 * 60
    header = json.loads(_unb64(token.split(".")[0]))
    assert header == {"typ": "JWT", "alg": "HS256", "kid": key_id_of(KEY)}


def test_claims_carry_scope_and_lifetime(tokens: SessionTokens) -> None:
    """iss, aud, sub, org, uid, iat, nbf, exp and a unique jti are in every token."""
    claims = _claims(tokens)

    assert {k: claims[k] for k in ("iss", "aud", "sub", "org", "uid", "iat", "nbf", "exp")} == {
        "iss": "rased",
        "aud": "rased-ingest",
        "sub": "sess-1",
        "org": ORG,
        "uid": "user-7",
        "iat": T0,
        "nbf": T0,
        "exp": T0 + 900,
    }
    assert claims["jti"] != _claims(tokens)["jti"]


def test_a_token_without_user_has_no_uid(tokens: SessionTokens) -> None:
    """The user id is optional."""
    token, _ = tokens.issue(ORG, "sess-1", None, timedelta(minutes=5))
    caller = tokens.verify(token)
    assert caller.user_id is None
    assert "uid" not in json.loads(_unb64(token.split(".")[1]))


def test_ttl_default_cap_and_bounds(tokens: SessionTokens) -> None:
    """TTL 0 or None takes the default; above the maximum or negative is refused."""
    assert tokens.issue(ORG, "s", None, timedelta(0))[1].timestamp() == T0 + 900
    assert tokens.issue(ORG, "s", None, timedelta(hours=1))[1].timestamp() == T0 + 3600
    for ttl in (timedelta(hours=1, seconds=1), timedelta(seconds=-5)):
        with pytest.raises(ValidationFailed) as error:
            tokens.issue(ORG, "s", None, ttl)
        assert error.value.violations[0].field == "ttl_seconds"


def test_expired_token_is_refused_after_the_leeway(tokens: SessionTokens, clock: Clock) -> None:
    """A token works until exp (plus 30 s of leeway for clock skew) and not after."""
    token, _ = tokens.issue(ORG, "sess-1", None, timedelta(minutes=15))
    clock.now = T0 + 900 + 29
    assert tokens.verify(token).session_id == "sess-1"

    clock.now = T0 + 900 + 31
    with pytest.raises(Unauthenticated, match="invalid or expired credential"):
        tokens.verify(token)


def test_a_token_from_the_future_is_refused(tokens: SessionTokens, clock: Clock) -> None:
    """nbf/iat later than now (beyond leeway) is refused."""
    token, _ = tokens.issue(ORG, "sess-1", None, None)
    clock.now = T0 - 120
    with pytest.raises(Unauthenticated):
        tokens.verify(token)


def test_alg_none_is_refused(tokens: SessionTokens) -> None:
    """An unsigned token (alg none), with or without an empty signature, is refused."""
    claims = _claims(tokens)
    for header in ({"alg": "none"}, {"alg": "none", "kid": key_id_of(KEY)}, {"alg": "None"}):
        with pytest.raises(Unauthenticated):
            tokens.verify(_forge(header, claims))
        with pytest.raises(Unauthenticated):
            tokens.verify(_forge(header, claims).rstrip("."))


def test_hs512_signed_with_the_right_key_is_refused(tokens: SessionTokens) -> None:
    """Even a valid HMAC under our key is refused when the header names HS512."""
    token = _hs({"alg": "HS512", "kid": key_id_of(KEY)}, _claims(tokens), KEY, hashlib.sha512)
    with pytest.raises(Unauthenticated):
        tokens.verify(token)


def test_rs256_and_key_confusion_are_refused(tokens: SessionTokens) -> None:
    """An RS256 token is refused, as is HS256 keyed with a public key (RS/HS confusion)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_key = RSAKey.import_key(private)
    claims = _claims(tokens)
    rs256 = jwt.encode({"alg": "RS256", "kid": key_id_of(KEY)}, claims, rsa_key, ["RS256"])
    with pytest.raises(Unauthenticated):
        tokens.verify(rs256)

    # The attacker knows a public key and signs HS256 with its PEM as the HMAC secret.
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    confused = _hs({"alg": "HS256", "kid": key_id_of(KEY)}, claims, pem, hashlib.sha256)
    with pytest.raises(Unauthenticated):
        tokens.verify(confused)


def test_wrong_audience_or_issuer_is_refused(clock: Clock) -> None:
    """Tokens of another audience or issuer, signed with our key, are refused."""
    verifier = SessionTokens(KEY, clock=clock)
    for minted_by in (
        SessionTokens(KEY, audience="rased-results", clock=clock),
        SessionTokens(KEY, issuer="someone-else", clock=clock),
    ):
        token, _ = minted_by.issue(ORG, "sess-1", None, None)
        with pytest.raises(Unauthenticated):
            verifier.verify(token)


def test_wrong_signing_key_is_refused(clock: Clock) -> None:
    """A token signed with another key is refused, even if it claims our key's kid."""
    verifier = SessionTokens(KEY, clock=clock)
    token, _ = SessionTokens(OTHER_KEY, clock=clock).issue(ORG, "sess-1", None, None)
    with pytest.raises(Unauthenticated):
        verifier.verify(token)

    claims = _claims(verifier)
    forged = _hs({"alg": "HS256", "kid": key_id_of(KEY)}, claims, OTHER_KEY, hashlib.sha256)
    with pytest.raises(Unauthenticated):
        verifier.verify(forged)


def test_tampered_payload_is_refused(tokens: SessionTokens) -> None:
    """Changing the organization in the payload breaks the signature."""
    token, _ = tokens.issue(ORG, "sess-1", None, None)
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["org"] = "another-org"
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(Unauthenticated):
        tokens.verify(tampered)


def test_missing_required_claims_are_refused(tokens: SessionTokens) -> None:
    """A correctly signed token lacking any required claim, or with a bad org, is refused."""
    good = _claims(tokens)
    header = {"alg": "HS256", "kid": key_id_of(KEY)}
    assert tokens.verify(_hs(header, good, KEY, hashlib.sha256)).organization_id == ORG
    for claim in ("iss", "aud", "sub", "org", "iat", "nbf", "exp", "jti"):
        claims = {k: v for k, v in good.items() if k != claim}
        with pytest.raises(Unauthenticated):
            tokens.verify(_hs(header, claims, KEY, hashlib.sha256))
    for bad in ({"org": 42}, {"org": ""}, {"sub": ""}, {"uid": 7}, {"exp": "never"}):
        with pytest.raises(Unauthenticated):
            tokens.verify(_hs(header, {**good, **bad}, KEY, hashlib.sha256))


def test_previous_keys_verify_during_rotation(clock: Clock) -> None:
    """After rotation, tokens of the previous key still verify; new ones use the new key."""
    old = SessionTokens(OTHER_KEY, clock=clock)
    rotated = SessionTokens(KEY, previous_keys=[OTHER_KEY], clock=clock)
    old_token, _ = old.issue(ORG, "sess-1", None, None)
    new_token, _ = rotated.issue(ORG, "sess-2", None, None)

    assert rotated.verify(old_token).session_id == "sess-1"
    assert rotated.verify(new_token).session_id == "sess-2"
    with pytest.raises(Unauthenticated):
        old.verify(new_token)


def test_short_keys_are_refused_at_construction() -> None:
    """An HS256 key under 32 bytes is a configuration error."""
    with pytest.raises(ValueError, match="32 bytes"):
        SessionTokens(b"short")


def test_garbage_never_escapes_as_another_error(tokens: SessionTokens) -> None:
    """Random strings and mutations of a good token raise Unauthenticated, nothing else."""
    token, _ = tokens.issue(ORG, "sess-1", None, None)
    rng = random.Random(4)
    alphabet = "abcXYZ019-_.=+/ {}\"'\\\x00é"
    candidates = ["", ".", "..", "...", "a.b.c", "a.b.c.d.e", token + ".", "." + token]
    for _ in range(500):
        chars = list(token)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        candidates.append("".join(chars))
        candidates.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))))
    for candidate in candidates:
        if candidate == token:
            continue
        try:
            tokens.verify(candidate)
        except Unauthenticated:
            continue
        # A mutation can hit only base64 padding bits and leave the token intact.
        assert _unb64(candidate.split(".")[2]) == _unb64(token.split(".")[2])


def test_an_oct_key_token_of_another_kid_is_refused(tokens: SessionTokens) -> None:
    """A token naming an unknown kid is refused without trying other keys."""
    token = jwt.encode(
        {"alg": "HS256", "kid": "unknown"}, _claims(tokens), OctKey.import_key(KEY), ["HS256"]
    )
    with pytest.raises(Unauthenticated):
        tokens.verify(token)


def test_a_remembered_token_still_expires_on_time(tokens: SessionTokens, clock: Clock) -> None:
    """Verifying the same token again answers the same, until exp plus the leeway."""
    token, _ = tokens.issue(ORG, "sess-1", "user-1", timedelta(minutes=15))
    first = tokens.verify(token)
    clock.now = T0 + 900 + 30
    assert tokens.verify(token) == first
    clock.now = T0 + 900 + 31
    with pytest.raises(Unauthenticated, match="invalid or expired credential"):
        tokens.verify(token)


def test_remembered_tokens_stay_bounded(
    tokens: SessionTokens, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of distinct tokens does not grow memory past the bound; each still verifies."""
    monkeypatch.setattr("rased.services.ingestion.sessions._VERIFIED_MAX_ENTRIES", 3)
    issued = [tokens.issue(ORG, f"sess-{n}", None, None)[0] for n in range(7)]
    for n, token in enumerate(issued):
        assert tokens.verify(token).session_id == f"sess-{n}"
        assert len(tokens._verified) <= 3
    assert tokens.verify(issued[0]).session_id == "sess-0"
