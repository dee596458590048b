"""Ingestion credentials and encrypted batches against real PostgreSQL, a fresh database each."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from joserfc import jwe
from joserfc.jwk import ECKey, OctKey

from rased.adapters.postgres.keys import (
    ApiKeyKind,
    ApiKeyRecord,
    ApiKeyStore,
    EncryptionKeyStore,
    OrganizationStore,
)
from rased.common.crypto import MasterKeyring, SealError, generate_key, key_spec_entry
from rased.common.errors import (
    DecryptionFailed,
    DependencyUnavailable,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from rased.services.ingestion.auth import TokenAuthenticator
from rased.services.ingestion.jwe import OrgKeyDecryptor, encrypt_for
from rased.services.ingestion.ports import Authenticator, BatchDecryptor, Caller, CredentialKind
from rased.services.ingestion.sessions import SessionTokens

SIGNING_KEY = b"s" * 32
ORIGIN = "https://shop.example"
BATCH = json.dumps({"batchId": "b-1", "sessionId": "sess-1", "events": []}).encode()
OLD_MASTER = key_spec_entry("m-2025", generate_key())
NEW_MASTER = key_spec_entry("m-2026", generate_key())


@pytest.fixture
async def pool(fresh_database: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh, migrated database owned by the application's role."""
    pool = await asyncpg.create_pool(fresh_database, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


class CountingKeyStore(ApiKeyStore):
    """The real store, counting how often the authenticator queries it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.lookups = 0

    async def find_active(self, secret: str) -> ApiKeyRecord | None:
        """Count, then look up."""
        self.lookups += 1
        return await super().find_active(secret)


def _authenticator(pool: asyncpg.Pool, ttl: float = 0.0) -> Authenticator:
    """The authenticator as ingestion wires it (typed by its port), caching keys for `ttl` s."""
    return TokenAuthenticator(
        ApiKeyStore(pool), SessionTokens(SIGNING_KEY), key_cache_ttl=timedelta(seconds=ttl)
    )


def _bearer(credential: str) -> str:
    return f"Bearer {credential}"


# -- API keys ---------------------------------------------------------------------------------


async def test_keys_are_stored_only_as_hashes(pool: asyncpg.Pool) -> None:
    """The secret has its kind's prefix and 256 bits; the table holds its SHA-256, not it."""
    org = await OrganizationStore(pool).create("Bank A", retention_days=30)
    key_id, secret = await ApiKeyStore(pool).create(org, "secret", label="backend")

    assert secret.startswith("rsd_sk_") and len(secret) == len("rsd_sk_") + 43
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", uuid.UUID(key_id))
        retention = await conn.fetchval(
            "SELECT retention_days FROM organizations WHERE id = $1", uuid.UUID(org)
        )
    assert retention == 30
    assert bytes(row["key_hash"]) == hashlib.sha256(secret.encode()).digest()
    assert row["prefix"] == secret[:13]
    assert row["label"] == "backend"
    assert all(secret[13:] not in str(value) for value in dict(row).values())


async def test_publishable_key_ingests_but_is_not_a_secret_key(pool: asyncpg.Pool) -> None:
    """A publishable key authenticates ingest as its org, and is refused for secret use."""
    org = await OrganizationStore(pool).create("Bank A")
    key_id, secret = await ApiKeyStore(pool).create(org, ApiKeyKind.PUBLISHABLE)
    auth = _authenticator(pool)

    caller = await auth.authenticate_ingest(_bearer(secret), origin=None)

    assert caller == Caller(
        organization_id=org, credential=CredentialKind.PUBLISHABLE_KEY, key_id=key_id
    )
    with pytest.raises(Unauthenticated, match="secret API key is required"):
        await auth.authenticate_secret(_bearer(secret))


async def test_secret_key_mints_sessions_but_does_not_ingest(pool: asyncpg.Pool) -> None:
    """A secret key passes authenticate_secret and is refused for ingest."""
    org = await OrganizationStore(pool).create("Bank A")
    key_id, secret = await ApiKeyStore(pool).create(org, ApiKeyKind.SECRET)
    auth = _authenticator(pool)

    assert await auth.authenticate_secret(_bearer(secret)) == Caller(
        organization_id=org, credential=CredentialKind.SECRET_KEY, key_id=key_id
    )
    with pytest.raises(Unauthenticated, match="secret keys cannot ingest"):
        await auth.authenticate_ingest(_bearer(secret), origin=None)


async def test_session_token_ingests_and_is_not_a_secret_key(pool: asyncpg.Pool) -> None:
    """A session token minted for an org ingests as that org and session, nothing more."""
    org = await OrganizationStore(pool).create("Bank A")
    auth = _authenticator(pool)
    token, _ = SessionTokens(SIGNING_KEY).issue(org, "sess-9", "user-1", None)

    caller = await auth.authenticate_ingest(_bearer(token), origin="https://anywhere.example")

    assert caller == Caller(
        organization_id=org,
        credential=CredentialKind.SESSION_TOKEN,
        session_id="sess-9",
        user_id="user-1",
    )
    with pytest.raises(Unauthenticated):
        await auth.authenticate_secret(_bearer(token))
    forged, _ = SessionTokens(b"x" * 32).issue(org, "sess-9", None, None)
    with pytest.raises(Unauthenticated):
        await auth.authenticate_ingest(_bearer(forged), origin=None)


async def test_revoked_keys_are_refused_within_the_cache_ttl(pool: asyncpg.Pool) -> None:
    """Revocation is immediate without a cache and takes effect once a cached entry lapses."""
    org = await OrganizationStore(pool).create("Bank A")
    keys = ApiKeyStore(pool)
    key_id, secret = await keys.create(org, ApiKeyKind.PUBLISHABLE)
    uncached, cached = _authenticator(pool), _authenticator(pool, ttl=0.5)
    await cached.authenticate_ingest(_bearer(secret), origin=None)

    assert await keys.revoke(org, key_id)
    assert not await keys.revoke(org, key_id)  # already revoked

    with pytest.raises(Unauthenticated, match="invalid or expired credential"):
        await uncached.authenticate_ingest(_bearer(secret), origin=None)
    await cached.authenticate_ingest(_bearer(secret), origin=None)  # within the TTL
    await asyncio.sleep(0.6)
    with pytest.raises(Unauthenticated):
        await cached.authenticate_ingest(_bearer(secret), origin=None)
    assert await keys.find_active(secret) is None


async def test_another_org_cannot_revoke_a_key(pool: asyncpg.Pool) -> None:
    """Revocation is scoped to the key's organization."""
    orgs = OrganizationStore(pool)
    org_a, org_b = await orgs.create("A"), await orgs.create("B")
    key_id, secret = await ApiKeyStore(pool).create(org_a, ApiKeyKind.SECRET)

    assert not await ApiKeyStore(pool).revoke(org_b, key_id)
    assert not await ApiKeyStore(pool).revoke(org_a, "not-a-uuid")
    assert (await _authenticator(pool).authenticate_secret(_bearer(secret))).key_id == key_id


async def test_expired_keys_are_refused_even_when_cached(pool: asyncpg.Pool) -> None:
    """A key past expires_at is refused, whether the store or the cache answers."""
    org = await OrganizationStore(pool).create("Bank A")
    keys = ApiKeyStore(pool)
    _, expired = await keys.create(
        org, ApiKeyKind.SECRET, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    _, expiring = await keys.create(
        org, ApiKeyKind.SECRET, expires_at=datetime.now(UTC) + timedelta(seconds=1)
    )
    auth = _authenticator(pool, ttl=60)

    with pytest.raises(Unauthenticated):
        await auth.authenticate_secret(_bearer(expired))
    await auth.authenticate_secret(_bearer(expiring))  # now cached for a minute
    await asyncio.sleep(1.2)
    with pytest.raises(Unauthenticated):
        await auth.authenticate_secret(_bearer(expiring))


async def test_allowed_origins_are_enforced(pool: asyncpg.Pool) -> None:
    """A restricted publishable key works only from its origins; an open one from any."""
    org = await OrganizationStore(pool).create("Bank A")
    keys = ApiKeyStore(pool)
    _, restricted = await keys.create(
        org, ApiKeyKind.PUBLISHABLE, allowed_origins=[ORIGIN, "http://localhost:3000"]
    )
    _, open_key = await keys.create(org, ApiKeyKind.PUBLISHABLE)
    auth = _authenticator(pool, ttl=5)

    await auth.authenticate_ingest(_bearer(restricted), origin=ORIGIN)
    await auth.authenticate_ingest(_bearer(restricted), origin="http://localhost:3000")
    for origin in (None, "", "https://evil.example", ORIGIN + "/", "https://SHOP.example"):
        with pytest.raises(Unauthenticated, match="invalid or expired credential"):
            await auth.authenticate_ingest(_bearer(restricted), origin=origin)
    for origin in (None, "https://evil.example"):
        await auth.authenticate_ingest(_bearer(open_key), origin=origin)


async def test_origins_are_only_for_publishable_keys(pool: asyncpg.Pool) -> None:
    """Origins on a secret key, or malformed origins, are refused when the key is created."""
    org = await OrganizationStore(pool).create("Bank A")
    keys = ApiKeyStore(pool)
    with pytest.raises(ValidationFailed, match="allowed_origins"):
        await keys.create(org, ApiKeyKind.SECRET, allowed_origins=[ORIGIN])
    with pytest.raises(ValidationFailed, match=r"allowed_origins\[1\]"):
        await keys.create(org, ApiKeyKind.PUBLISHABLE, allowed_origins=[ORIGIN, ORIGIN + "/x"])
    with pytest.raises(NotFound):
        await keys.create(str(uuid.uuid4()), ApiKeyKind.SECRET)
    assert await keys.list_for_organization(org) == []


async def test_unknown_and_malformed_credentials_are_refused(pool: asyncpg.Pool) -> None:
    """Unknown keys, keys of the wrong shape, missing or non-bearer headers: all refused."""
    org = await OrganizationStore(pool).create("Bank A")
    _, secret = await ApiKeyStore(pool).create(org, ApiKeyKind.PUBLISHABLE)
    unknown = "rsd_pk_" + "A" * 43
    auth = _authenticator(pool)

    for authorization in (
        _bearer(unknown),
        _bearer(secret[:-1]),
        _bearer(secret + "x"),
        _bearer("rsd_pk_short"),
        _bearer("not-a-token"),
        f"Basic {secret}",
        secret,
        "Bearer ",
        "",
        None,
    ):
        with pytest.raises(Unauthenticated):
            await auth.authenticate_ingest(authorization, origin=None)
    with pytest.raises(Unauthenticated):
        await auth.authenticate_secret(_bearer("rsd_sk_" + "A" * 43))
    assert (await auth.authenticate_ingest(f"bearer  {secret}", origin=None)).organization_id == org


async def test_concurrent_calls_share_one_lookup_then_use_the_cache(pool: asyncpg.Pool) -> None:
    """A burst with an uncached key makes one query; later calls within the TTL make none."""
    org = await OrganizationStore(pool).create("Bank A")
    _, secret = await ApiKeyStore(pool).create(org, ApiKeyKind.PUBLISHABLE)
    store = CountingKeyStore(pool)
    auth = TokenAuthenticator(store, SessionTokens(SIGNING_KEY), timedelta(seconds=30))

    callers = await asyncio.gather(
        *(auth.authenticate_ingest(_bearer(secret), origin=None) for _ in range(50))
    )
    await auth.authenticate_ingest(_bearer(secret), origin=None)

    assert {caller.organization_id for caller in callers} == {org}
    assert store.lookups == 1


async def test_postgres_down_is_unavailable_not_unauthenticated() -> None:
    """When PostgreSQL cannot be reached the caller gets a retryable error, not a refusal."""
    dead = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:1/none", min_size=0)
    try:
        with pytest.raises(DependencyUnavailable):
            await _authenticator(dead).authenticate_ingest(
                _bearer("rsd_pk_" + "A" * 43), origin=None
            )
    finally:
        await dead.close()


async def test_deleting_an_organization_deletes_its_keys(pool: asyncpg.Pool) -> None:
    """Keys go with their organization (ON DELETE CASCADE)."""
    org = await OrganizationStore(pool).create("Bank A")
    _, secret = await ApiKeyStore(pool).create(org, ApiKeyKind.SECRET)
    await EncryptionKeyStore(pool, MasterKeyring.from_spec(NEW_MASTER)).create(org)
    await pool.execute("DELETE FROM organizations WHERE id = $1", uuid.UUID(org))

    assert await ApiKeyStore(pool).find_active(secret) is None
    assert await pool.fetchval("SELECT count(*) FROM encryption_keys") == 0


# -- encrypted batches ------------------------------------------------------------------------


async def test_jwe_round_trip_to_the_orgs_key(pool: asyncpg.Pool) -> None:
    """A batch encrypted to the org's public JWK decrypts to the same bytes."""
    org = await OrganizationStore(pool).create("Bank A")
    store = EncryptionKeyStore(pool, MasterKeyring.from_spec(NEW_MASTER))
    public_jwk = await store.create(org)

    assert "d" not in public_jwk
    assert public_jwk["alg"] == "ECDH-ES+A256KW" and public_jwk["crv"] == "P-256"
    current = await store.find_current(org)
    assert current is not None and current.public_jwk == public_jwk
    assert current.key_id == public_jwk["kid"]
    assert await OrgKeyDecryptor(store).decrypt(org, encrypt_for(public_jwk, BATCH)) == BATCH
    # The stored private key is sealed: neither its JSON nor "d" appear in clear.
    sealed = await pool.fetchval("SELECT private_jwk_sealed FROM encryption_keys")
    assert b'"d"' not in sealed and b"P-256" not in sealed


async def test_tampered_jwe_fails_cleanly(pool: asyncpg.Pool) -> None:
    """Any changed segment of the JWE is DecryptionFailed, never another exception."""
    org = await OrganizationStore(pool).create("Bank A")
    store = EncryptionKeyStore(pool, MasterKeyring.from_spec(NEW_MASTER))
    token = encrypt_for(await store.create(org), BATCH)
    decryptor: BatchDecryptor = OrgKeyDecryptor(store)

    parts = token.split(".")
    for index in range(1, 5):
        segment = bytearray(base64.urlsafe_b64decode(parts[index] + "=="))
        segment[len(segment) // 2] ^= 0x01
        changed = list(parts)
        changed[index] = base64.urlsafe_b64encode(segment).rstrip(b"=").decode()
        with pytest.raises(DecryptionFailed, match="wrong key or tampered"):
            await decryptor.decrypt(org, ".".join(changed))
    # A header edit that keeps alg/enc/kid (the header is authenticated data).
    header = json.loads(base64.urlsafe_b64decode(parts[0] + "=="))
    header["x"] = 1
    edited = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    with pytest.raises(DecryptionFailed):
        await decryptor.decrypt(org, ".".join([edited, *parts[1:]]))
    for garbage in ("", "a.b.c.d.e", "....", token + ".x", token[:-5], "x" * 2000 + token):
        with pytest.raises(DecryptionFailed):
            await decryptor.decrypt(org, garbage)


async def test_another_orgs_key_or_a_wrong_kid_fails(pool: asyncpg.Pool) -> None:
    """Encrypted to org B: org A cannot open it; a kid naming the wrong key fails too."""
    orgs = OrganizationStore(pool)
    org_a, org_b = await orgs.create("A"), await orgs.create("B")
    store = EncryptionKeyStore(pool, MasterKeyring.from_spec(NEW_MASTER))
    key_a1, key_a2, key_b = (
        await store.create(org_a),
        await store.create(org_a),
        await store.create(org_b),
    )
    decryptor = OrgKeyDecryptor(store)

    with pytest.raises(DecryptionFailed, match="unknown key id"):
        await decryptor.decrypt(org_a, encrypt_for(key_b, BATCH))
    # Encrypted to A's first key but labelled with A's second key.
    mislabelled = encrypt_for({**key_a1, "kid": key_a2["kid"]}, BATCH)
    with pytest.raises(DecryptionFailed, match="wrong key or tampered"):
        await decryptor.decrypt(org_a, mislabelled)
    for kid in (str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(DecryptionFailed, match="unknown key id"):
            await decryptor.decrypt(org_a, encrypt_for({**key_a1, "kid": kid}, BATCH))
    assert await decryptor.decrypt(org_a, encrypt_for(key_a2, BATCH)) == BATCH


async def test_other_algorithms_and_compression_are_refused(pool: asyncpg.Pool) -> None:
    """Only ECDH-ES+A256KW with A256GCM is accepted: dir, other enc and zip are refused."""
    org = await OrganizationStore(pool).create("Bank A")
    store = EncryptionKeyStore(pool, MasterKeyring.from_spec(NEW_MASTER))
    public_jwk = await store.create(org)
    kid = public_jwk["kid"]
    ec_key = ECKey.import_key(public_jwk)
    decryptor = OrgKeyDecryptor(store)

    candidates = [
        jwe.encrypt_compact(
            {"alg": "ECDH-ES+A256KW", "enc": "A128GCM", "kid": kid},
            BATCH,
            ec_key,
            algorithms=["ECDH-ES+A256KW", "A128GCM"],
        ),
        jwe.encrypt_compact(
            {"alg": "ECDH-ES", "enc": "A256GCM", "kid": kid},
            BATCH,
            ec_key,
            algorithms=["ECDH-ES", "A256GCM"],
        ),
        jwe.encrypt_compact(
            {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "zip": "DEF", "kid": kid},
            BATCH,
            ec_key,
            algorithms=["ECDH-ES+A256KW", "A256GCM", "DEF"],
        ),
        jwe.encrypt_compact(
            {"alg": "dir", "enc": "A256GCM", "kid": kid},
            BATCH,
            OctKey.generate_key(256),
            algorithms=["dir", "A256GCM"],
        ),
    ]
    for token in candidates:
        with pytest.raises(DecryptionFailed, match="only alg ECDH-ES\\+A256KW"):
            await decryptor.decrypt(org, token)


async def test_expired_encryption_keys_stop_decrypting(pool: asyncpg.Pool) -> None:
    """After a rotation's overlap window the old private key no longer opens batches."""
    org = await OrganizationStore(pool).create("Bank A")
    store = EncryptionKeyStore(pool, MasterKeyring.from_spec(NEW_MASTER))
    old = await store.create(org, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    new = await store.create(org)

    current = await store.find_current(org)
    assert current is not None and current.key_id == new["kid"]
    with pytest.raises(DecryptionFailed, match="unknown key id"):
        await OrgKeyDecryptor(store).decrypt(org, encrypt_for(old, BATCH))


async def test_encryption_keys_survive_master_key_rotation(pool: asyncpg.Pool) -> None:
    """Keys sealed under the old master key still decrypt once a new master key is added."""
    org = await OrganizationStore(pool).create("Bank A")
    before = EncryptionKeyStore(pool, MasterKeyring.from_spec(OLD_MASTER))
    old_jwk = await before.create(org)

    rotated = EncryptionKeyStore(pool, MasterKeyring.from_spec(f"{OLD_MASTER},{NEW_MASTER}"))
    new_jwk = await rotated.create(org)
    decryptor = OrgKeyDecryptor(rotated)

    assert await decryptor.decrypt(org, encrypt_for(old_jwk, BATCH)) == BATCH
    assert await decryptor.decrypt(org, encrypt_for(new_jwk, BATCH)) == BATCH
    rows = await pool.fetch("SELECT key_id, master_key_id FROM encryption_keys")
    assert {str(r["key_id"]): r["master_key_id"] for r in rows} == {
        old_jwk["kid"]: "m-2025",
        new_jwk["kid"]: "m-2026",
    }
    # Dropping the old master key before re-sealing makes its rows unreadable (loudly).
    only_new = EncryptionKeyStore(pool, MasterKeyring.from_spec(NEW_MASTER))
    with pytest.raises(SealError, match="m-2025"):
        await only_new.find_private(org, old_jwk["kid"])


async def test_a_sealed_key_copied_to_another_row_does_not_open(pool: asyncpg.Pool) -> None:
    """The sealed private key is bound to its organization and key id."""
    orgs = OrganizationStore(pool)
    org_a, org_b = await orgs.create("A"), await orgs.create("B")
    store = EncryptionKeyStore(pool, MasterKeyring.from_spec(NEW_MASTER))
    key_a, key_b = await store.create(org_a), await store.create(org_b)
    await pool.execute(
        "UPDATE encryption_keys SET private_jwk_sealed = "
        "(SELECT private_jwk_sealed FROM encryption_keys WHERE key_id = $1) WHERE key_id = $2",
        uuid.UUID(key_a["kid"]),
        uuid.UUID(key_b["kid"]),
    )
    with pytest.raises(SealError):
        await store.find_private(org_b, key_b["kid"])
