"""AdminService through a real gRPC client on real PostgreSQL, and the `rased` CLI against it."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import pytest
from admin_harness import running_admin
from grpc import aio

from rased.adapters.postgres.keys import ApiKeyStore, EncryptionKeyStore
from rased.adapters.postgres.webhooks import WebhookEndpointStore
from rased.cli.main import main as rased_cli
from rased.common.crypto import MasterKeyring, generate_key, key_spec_entry
from rased.services.admin.servicer import AdminServicer
from rased.services.ingestion.auth import TokenAuthenticator
from rased.services.ingestion.ports import CredentialKind
from rased.services.ingestion.sessions import SessionTokens
from rased.v1 import admin_pb2, admin_pb2_grpc

MASTER = key_spec_entry("test-1", generate_key())
OPERATOR = "op-" + uuid.uuid4().hex + uuid.uuid4().hex


def _bearer(credential: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {credential}"),)


@dataclass
class Org:
    """An organization made for one test, with its first keys."""

    organization_id: str
    publishable: str
    publishable_id: str
    secret: str
    secret_id: str


@dataclass
class Admin:
    """An in-process admin server, a client and a pool on the same database."""

    stub: admin_pb2_grpc.AdminServiceAsyncStub
    port: int
    pool: asyncpg.Pool

    async def create_org(self, name: str = "bank") -> Org:
        reply = await self.stub.CreateOrganization(
            admin_pb2.CreateOrganizationRequest(name=f"{name}-{uuid.uuid4().hex[:8]}"),
            metadata=_bearer(OPERATOR),
        )
        return Org(
            reply.organization.organization_id,
            reply.publishable_key.secret,
            reply.publishable_key.key.key_id,
            reply.secret_key.secret,
            reply.secret_key.key.key_id,
        )


@pytest.fixture
async def admin(fresh_database: str) -> AsyncIterator[Admin]:
    # A fresh database per test: organizations listings and audit rows are this test's own.
    async with running_admin(fresh_database, MASTER, OPERATOR) as server:
        yield Admin(server.stub, server.port, server.pool)


async def _status(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details() or ""


async def test_operator_creates_an_organization_whose_keys_work(admin: Admin) -> None:
    reply = await admin.stub.CreateOrganization(
        admin_pb2.CreateOrganizationRequest(name="First Bank", retention_days=30),
        metadata=_bearer(OPERATOR),
    )
    org = reply.organization
    assert org.name == "First Bank"
    assert org.retention_days == 30
    assert reply.publishable_key.secret.startswith("rsd_pk_")
    assert reply.secret_key.secret.startswith("rsd_sk_")
    assert reply.secret_key.secret.startswith(reply.secret_key.key.prefix)
    assert reply.secret_key.key.organization_id == org.organization_id

    # The keys are the ones ingestion accepts.
    authenticator = TokenAuthenticator(ApiKeyStore(admin.pool), SessionTokens(b"s" * 40))
    caller = await authenticator.authenticate_secret(f"Bearer {reply.secret_key.secret}")
    assert caller.organization_id == org.organization_id
    assert caller.credential is CredentialKind.SECRET_KEY
    ingest = await authenticator.authenticate_ingest(f"Bearer {reply.publishable_key.secret}", None)
    assert ingest.credential is CredentialKind.PUBLISHABLE_KEY

    # A new organization has its JWE key pair, and the secret key reads it.
    key = await admin.stub.GetEncryptionKey(
        admin_pb2.GetEncryptionKeyRequest(organization_id=org.organization_id),
        metadata=_bearer(reply.secret_key.secret),
    )
    assert json.loads(key.key.public_jwk)["kid"] == key.key.key_id
    assert "d" not in json.loads(key.key.public_jwk)  # the public half only


class _Signed:
    """A stub whose every call carries one credential."""

    def __init__(self, stub: admin_pb2_grpc.AdminServiceAsyncStub, credential: str) -> None:
        self._stub = stub
        self._credential = credential

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        return lambda request: method(request, metadata=_bearer(self._credential))


def _cross_tenant_calls(victim: Org, endpoint: str = "") -> dict[str, Callable[[Any, str], Any]]:
    """Every implemented org-scoped RPC, aimed at `org_id` (and the victim's key or endpoint)."""
    key = victim.secret_id
    return {
        "CreateWebhookEndpoint": lambda s, o: s.CreateWebhookEndpoint(
            admin_pb2.CreateWebhookEndpointRequest(organization_id=o, url="https://evil.example/")
        ),
        "ListWebhookEndpoints": lambda s, o: s.ListWebhookEndpoints(
            admin_pb2.ListWebhookEndpointsRequest(organization_id=o)
        ),
        "UpdateWebhookEndpoint": lambda s, o: s.UpdateWebhookEndpoint(
            admin_pb2.UpdateWebhookEndpointRequest(
                organization_id=o, endpoint_id=endpoint, url="https://evil.example/"
            )
        ),
        "DeleteWebhookEndpoint": lambda s, o: s.DeleteWebhookEndpoint(
            admin_pb2.DeleteWebhookEndpointRequest(organization_id=o, endpoint_id=endpoint)
        ),
        "RotateWebhookSecret": lambda s, o: s.RotateWebhookSecret(
            admin_pb2.RotateWebhookSecretRequest(organization_id=o, endpoint_id=endpoint)
        ),
        "GetOrganization": lambda s, o: s.GetOrganization(
            admin_pb2.GetOrganizationRequest(organization_id=o)
        ),
        "SetRetention": lambda s, o: s.SetRetention(
            admin_pb2.SetRetentionRequest(organization_id=o, retention_days=1)
        ),
        "CreateApiKey": lambda s, o: s.CreateApiKey(
            admin_pb2.CreateApiKeyRequest(organization_id=o, kind=admin_pb2.API_KEY_KIND_SECRET)
        ),
        "ListApiKeys": lambda s, o: s.ListApiKeys(admin_pb2.ListApiKeysRequest(organization_id=o)),
        "RevokeApiKey": lambda s, o: s.RevokeApiKey(
            admin_pb2.RevokeApiKeyRequest(organization_id=o, key_id=key)
        ),
        "RotateApiKey": lambda s, o: s.RotateApiKey(
            admin_pb2.RotateApiKeyRequest(organization_id=o, key_id=key)
        ),
        "GetEncryptionKey": lambda s, o: s.GetEncryptionKey(
            admin_pb2.GetEncryptionKeyRequest(organization_id=o)
        ),
        "RotateEncryptionKey": lambda s, o: s.RotateEncryptionKey(
            admin_pb2.RotateEncryptionKeyRequest(organization_id=o)
        ),
        "ListAuditEvents": lambda s, o: s.ListAuditEvents(
            admin_pb2.ListAuditEventsRequest(organization_id=o)
        ),
        "ListWebhookDeliveries": lambda s, o: s.ListWebhookDeliveries(
            admin_pb2.ListWebhookDeliveriesRequest(organization_id=o)
        ),
        "RedeliverWebhook": lambda s, o: s.RedeliverWebhook(
            admin_pb2.RedeliverWebhookRequest(organization_id=o, delivery_id=str(uuid.uuid4()))
        ),
        "EraseSubject": lambda s, o: s.EraseSubject(
            admin_pb2.EraseSubjectRequest(
                organization_id=o, subject_kind=admin_pb2.SUBJECT_KIND_USER, subject_id="user-1"
            )
        ),
        "GetErasureJob": lambda s, o: s.GetErasureJob(
            admin_pb2.GetErasureJobRequest(organization_id=o, job_id=str(uuid.uuid4()))
        ),
    }


_ORG_SCOPED = sorted(_cross_tenant_calls(Org("", "", "", "", "")))
_HOOK_URL = "https://hooks.example.com/rased"


@pytest.mark.parametrize("rpc", _ORG_SCOPED)
async def test_a_key_cannot_touch_another_organization(admin: Admin, rpc: str) -> None:
    attacker, victim = await admin.create_org("attacker"), await admin.create_org("victim")
    hook = await admin.stub.CreateWebhookEndpoint(
        admin_pb2.CreateWebhookEndpointRequest(
            organization_id=victim.organization_id, url=_HOOK_URL
        ),
        metadata=_bearer(victim.secret),
    )
    call = _cross_tenant_calls(victim, hook.endpoint.endpoint_id)[rpc]
    stub = _Signed(admin.stub, attacker.secret)
    existing = await _status(call(stub, victim.organization_id))
    missing = await _status(call(stub, str(uuid.uuid4())))
    truly_missing = await _status(call(_Signed(admin.stub, OPERATOR), str(uuid.uuid4())))
    # Exactly what a missing organization gets: nothing tells the victim exists.
    assert existing == missing == truly_missing
    assert existing == (grpc.StatusCode.NOT_FOUND, "organization not found")

    # The victim is untouched: its key still administers it, its retention is unchanged.
    got = await admin.stub.GetOrganization(
        admin_pb2.GetOrganizationRequest(organization_id=victim.organization_id),
        metadata=_bearer(victim.secret),
    )
    assert got.organization.retention_days == 90
    keys = await admin.stub.ListApiKeys(
        admin_pb2.ListApiKeysRequest(organization_id=victim.organization_id),
        metadata=_bearer(victim.secret),
    )
    assert len(keys.api_keys) == 2
    assert all(not k.HasField("expire_time") for k in keys.api_keys)
    hooks = await admin.stub.ListWebhookEndpoints(
        admin_pb2.ListWebhookEndpointsRequest(organization_id=victim.organization_id),
        metadata=_bearer(victim.secret),
    )
    assert [(h.url, h.enabled) for h in hooks.endpoints] == [(_HOOK_URL, True)]
    store = WebhookEndpointStore(admin.pool, MasterKeyring.from_spec(MASTER))
    signing = await store.signing_secrets(victim.organization_id, hook.endpoint.endpoint_id)
    assert signing == [hook.secret]


_OPERATOR_ONLY = {"CreateOrganization", "ListOrganizations"}


def test_every_rpc_is_covered_by_a_tenancy_test() -> None:
    # A new RPC must join the cross-tenant test (or the operator-only set) to pass.
    rpcs = [m.name for m in admin_pb2.DESCRIPTOR.services_by_name["AdminService"].methods]
    assert sorted(rpcs) == sorted([*_OPERATOR_ONLY, *_ORG_SCOPED])
    assert all(name in vars(AdminServicer) for name in rpcs)


async def test_callers_other_than_operator_and_own_secret_key_are_refused(admin: Admin) -> None:
    org = await admin.create_org()
    get = admin_pb2.GetOrganizationRequest(organization_id=org.organization_id)
    create = admin_pb2.CreateOrganizationRequest(name="nope")
    listing = admin_pb2.ListOrganizationsRequest()
    cases: list[tuple[Any, grpc.StatusCode]] = [
        (admin.stub.GetOrganization(get), grpc.StatusCode.UNAUTHENTICATED),
        (
            admin.stub.GetOrganization(get, metadata=_bearer("x" * 64)),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        (
            admin.stub.GetOrganization(get, metadata=_bearer("eyJhbGciOi.e30.sig")),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        (
            admin.stub.GetOrganization(get, metadata=_bearer(org.publishable)),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            admin.stub.CreateOrganization(create, metadata=_bearer(org.secret)),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            admin.stub.ListOrganizations(listing, metadata=_bearer(org.secret)),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    ]
    for call, code in cases:
        assert (await _status(call))[0] == code
    listed = await admin.stub.ListOrganizations(listing, metadata=_bearer(OPERATOR))
    assert listed.organizations


async def test_listing_never_shows_a_secret(admin: Admin) -> None:
    org = await admin.create_org()
    created = await admin.stub.CreateApiKey(
        admin_pb2.CreateApiKeyRequest(
            organization_id=org.organization_id,
            kind=admin_pb2.API_KEY_KIND_PUBLISHABLE,
            allowed_origins=["https://shop.example"],
            label="checkout",
        ),
        metadata=_bearer(org.secret),
    )
    listed = await admin.stub.ListApiKeys(
        admin_pb2.ListApiKeysRequest(organization_id=org.organization_id, include_inactive=True),
        metadata=_bearer(OPERATOR),
    )
    assert listed.api_keys[0].key_id == created.api_key.key.key_id  # newest first
    assert list(listed.api_keys[0].allowed_origins) == ["https://shop.example"]
    wire = listed.SerializeToString()
    for secret in (org.secret, org.publishable, created.api_key.secret):
        assert secret.encode() not in wire
        assert secret[len("rsd_pk_") + 6 :].encode() not in wire  # not even the random part


async def test_revoke_and_rotate(admin: Admin) -> None:
    org = await admin.create_org()
    get = admin_pb2.GetOrganizationRequest(organization_id=org.organization_id)
    extra = await admin.stub.CreateApiKey(
        admin_pb2.CreateApiKeyRequest(
            organization_id=org.organization_id, kind=admin_pb2.API_KEY_KIND_SECRET
        ),
        metadata=_bearer(org.secret),
    )
    await admin.stub.GetOrganization(get, metadata=_bearer(extra.api_key.secret))
    revoked = await admin.stub.RevokeApiKey(
        admin_pb2.RevokeApiKeyRequest(
            organization_id=org.organization_id, key_id=extra.api_key.key.key_id
        ),
        metadata=_bearer(org.secret),
    )
    assert revoked.api_key.HasField("revoke_time")
    code, _ = await _status(admin.stub.GetOrganization(get, metadata=_bearer(extra.api_key.secret)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    active = await admin.stub.ListApiKeys(
        admin_pb2.ListApiKeysRequest(organization_id=org.organization_id),
        metadata=_bearer(OPERATOR),
    )
    assert extra.api_key.key.key_id not in {k.key_id for k in active.api_keys}

    rotated = await admin.stub.RotateApiKey(
        admin_pb2.RotateApiKeyRequest(
            organization_id=org.organization_id, key_id=org.secret_id, overlap_seconds=1
        ),
        metadata=_bearer(OPERATOR),
    )
    assert rotated.old_key.HasField("expire_time")
    assert rotated.new_key.secret.startswith("rsd_sk_")
    # Both work during the overlap window; then only the new one.
    await admin.stub.GetOrganization(get, metadata=_bearer(org.secret))
    await admin.stub.GetOrganization(get, metadata=_bearer(rotated.new_key.secret))
    await asyncio.sleep(1.2)
    code, _ = await _status(admin.stub.GetOrganization(get, metadata=_bearer(org.secret)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    await admin.stub.GetOrganization(get, metadata=_bearer(rotated.new_key.secret))
    # An expired key cannot be rotated again.
    code, _ = await _status(
        admin.stub.RotateApiKey(
            admin_pb2.RotateApiKeyRequest(
                organization_id=org.organization_id, key_id=org.secret_id
            ),
            metadata=_bearer(OPERATOR),
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND


async def test_encryption_key_rotation_keeps_the_old_private_key_for_the_overlap(
    admin: Admin,
) -> None:
    org = await admin.create_org()
    request = admin_pb2.GetEncryptionKeyRequest(organization_id=org.organization_id)
    before = await admin.stub.GetEncryptionKey(request, metadata=_bearer(org.secret))
    rotated = await admin.stub.RotateEncryptionKey(
        admin_pb2.RotateEncryptionKeyRequest(organization_id=org.organization_id),
        metadata=_bearer(org.secret),
    )
    after = await admin.stub.GetEncryptionKey(request, metadata=_bearer(org.secret))
    assert after.key.key_id == rotated.key.key_id != before.key.key_id
    store = EncryptionKeyStore(admin.pool, MasterKeyring.from_spec(MASTER))
    assert await store.find_private(org.organization_id, before.key.key_id) is not None
    assert await store.find_private(org.organization_id, after.key.key_id) is not None


async def test_webhook_endpoints(admin: Admin) -> None:
    org = await admin.create_org()
    auth = _bearer(org.secret)
    code, _ = await _status(
        admin.stub.CreateWebhookEndpoint(
            admin_pb2.CreateWebhookEndpointRequest(
                organization_id=org.organization_id, url="http://127.0.0.1:9/hook"
            ),
            metadata=auth,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # https only, unless allowed
    created = await admin.stub.CreateWebhookEndpoint(
        admin_pb2.CreateWebhookEndpointRequest(
            organization_id=org.organization_id,
            url=_HOOK_URL,
            event_types=["transaction.scored"],
            include_scores=True,
        ),
        metadata=auth,
    )
    assert created.secret.startswith("whsec_")
    assert len(base64.b64decode(created.secret.removeprefix("whsec_"))) == 32
    endpoint_id = created.endpoint.endpoint_id

    listed = await admin.stub.ListWebhookEndpoints(
        admin_pb2.ListWebhookEndpointsRequest(organization_id=org.organization_id),
        metadata=auth,
    )
    assert [e.endpoint_id for e in listed.endpoints] == [endpoint_id]
    assert created.secret.removeprefix("whsec_").encode() not in listed.SerializeToString()

    updated = await admin.stub.UpdateWebhookEndpoint(
        admin_pb2.UpdateWebhookEndpointRequest(
            organization_id=org.organization_id,
            endpoint_id=endpoint_id,
            enabled=False,
            replace_event_types=True,
        ),
        metadata=auth,
    )
    assert (updated.endpoint.enabled, list(updated.endpoint.event_types)) == (False, [])
    assert updated.endpoint.include_scores  # unset fields stay as they were
    assert updated.endpoint.url == _HOOK_URL

    rotated = await admin.stub.RotateWebhookSecret(
        admin_pb2.RotateWebhookSecretRequest(
            organization_id=org.organization_id, endpoint_id=endpoint_id, overlap_seconds=60
        ),
        metadata=auth,
    )
    assert rotated.secret.startswith("whsec_")
    assert rotated.secret != created.secret
    assert rotated.HasField("previous_secret_expire_time")
    store = WebhookEndpointStore(admin.pool, MasterKeyring.from_spec(MASTER))
    # Both sign during the overlap window, the new one first.
    assert await store.signing_secrets(org.organization_id, endpoint_id) == [
        rotated.secret,
        created.secret,
    ]

    await admin.stub.DeleteWebhookEndpoint(
        admin_pb2.DeleteWebhookEndpointRequest(
            organization_id=org.organization_id, endpoint_id=endpoint_id
        ),
        metadata=auth,
    )
    listed = await admin.stub.ListWebhookEndpoints(
        admin_pb2.ListWebhookEndpointsRequest(organization_id=org.organization_id),
        metadata=auth,
    )
    assert not listed.endpoints
    assert await store.signing_secrets(org.organization_id, endpoint_id) == []
    code, details = await _status(
        admin.stub.RotateWebhookSecret(
            admin_pb2.RotateWebhookSecretRequest(
                organization_id=org.organization_id, endpoint_id=endpoint_id
            ),
            metadata=auth,
        )
    )
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "webhook endpoint not found")

    audit = await admin.pool.fetch(
        "SELECT * FROM audit_log WHERE organization_id = $1", uuid.UUID(org.organization_id)
    )
    assert len(audit) >= 8
    assert "whsec_" not in json.dumps([{k: str(v) for k, v in dict(r).items()} for r in audit])


async def test_operator_may_allow_private_webhook_targets(admin: Admin) -> None:
    reply = await admin.stub.CreateOrganization(
        admin_pb2.CreateOrganizationRequest(name="local dev", allow_private_webhook_targets=True),
        metadata=_bearer(OPERATOR),
    )
    assert reply.organization.allow_private_webhook_targets
    created = await admin.stub.CreateWebhookEndpoint(
        admin_pb2.CreateWebhookEndpointRequest(
            organization_id=reply.organization.organization_id, url="http://127.0.0.1:9/hook"
        ),
        metadata=_bearer(reply.secret_key.secret),
    )
    assert created.endpoint.url == "http://127.0.0.1:9/hook"


async def test_decisions_are_audited_without_secrets(admin: Admin) -> None:
    attacker, victim = await admin.create_org("attacker"), await admin.create_org("victim")
    created = await admin.stub.CreateApiKey(
        admin_pb2.CreateApiKeyRequest(
            organization_id=attacker.organization_id, kind=admin_pb2.API_KEY_KIND_SECRET
        ),
        metadata=_bearer(attacker.secret),
    )
    await _status(
        admin.stub.GetOrganization(
            admin_pb2.GetOrganizationRequest(organization_id=victim.organization_id),
            metadata=_bearer(attacker.secret),
        )
    )
    await _status(
        admin.stub.GetOrganization(
            admin_pb2.GetOrganizationRequest(organization_id=victim.organization_id),
            metadata=_bearer("wrong-" + OPERATOR),
        )
    )
    page = await admin.stub.ListAuditEvents(
        admin_pb2.ListAuditEventsRequest(organization_id=attacker.organization_id, page_size=2),
        metadata=_bearer(OPERATOR),
    )
    assert page.next_page_token
    rest = await admin.stub.ListAuditEvents(
        admin_pb2.ListAuditEventsRequest(
            organization_id=attacker.organization_id, page_token=page.next_page_token
        ),
        metadata=_bearer(OPERATOR),
    )
    events = [*page.events, *rest.events]
    seen = [(e.actor, e.action.rsplit("/", 1)[1], e.outcome) for e in events]
    allowed, denied = admin_pb2.AUDIT_OUTCOME_ALLOWED, admin_pb2.AUDIT_OUTCOME_DENIED
    # Newest first; the denied cross-tenant call is in the attacker's own log.
    assert seen[:3] == [
        ("operator", "ListAuditEvents", allowed),
        (attacker.secret_id, "GetOrganization", denied),
        (attacker.secret_id, "CreateApiKey", allowed),
    ]
    assert "rased.v1.AdminService/GetOrganization" in {e.action for e in events}
    victim_log = await admin.stub.ListAuditEvents(
        admin_pb2.ListAuditEventsRequest(organization_id=victim.organization_id),
        metadata=_bearer(victim.secret),
    )
    assert attacker.secret_id not in {e.actor for e in victim_log.events}

    rows = await admin.pool.fetch(
        "SELECT * FROM audit_log WHERE organization_id = ANY($1::uuid[]) "
        "OR organization_id IS NULL ORDER BY seq DESC LIMIT 500",
        [attacker.organization_id, victim.organization_id],
    )
    assert any(r["actor"] == "anonymous" and r["reason"] == "unauthenticated" for r in rows)
    text = json.dumps([{k: str(v) for k, v in dict(r).items()} for r in rows])
    for secret in (
        OPERATOR,
        attacker.secret,
        attacker.publishable,
        victim.secret,
        created.api_key.secret,
    ):
        assert secret not in text


async def test_cli_creates_an_organization_as_json(
    admin: Admin, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--target", f"127.0.0.1:{admin.port}", "--token", OPERATOR]
    code = await asyncio.to_thread(rased_cli, ["org", "create", "CLI Bank", "--json", *target])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["name"] == "CLI Bank"
    assert out["publishable_key"].startswith("rsd_pk_")
    assert out["secret_key"].startswith("rsd_sk_")
    # What the script printed works: the secret key administers the new organization.
    got = await admin.stub.GetOrganization(
        admin_pb2.GetOrganizationRequest(organization_id=out["organization_id"]),
        metadata=_bearer(out["secret_key"]),
    )
    assert got.organization.name == "CLI Bank"

    code = await asyncio.to_thread(
        rased_cli, ["key", "list", out["organization_id"], "--json", *target]
    )
    listed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {k["key_id"] for k in listed} == {out["publishable_key_id"], out["secret_key_id"]}
    code = await asyncio.to_thread(
        rased_cli,
        [
            "key",
            "create",
            out["organization_id"],
            "--kind",
            "publishable",
            "--origin",
            "https://shop.example",
            "--json",
            *target,
        ],
    )
    made = json.loads(capsys.readouterr().out)
    assert code == 0
    assert made["secret"].startswith("rsd_pk_")
    assert made["key"]["allowed_origins"] == ["https://shop.example"]
    code = await asyncio.to_thread(
        rased_cli, ["key", "revoke", out["organization_id"], out["publishable_key_id"], *target]
    )
    assert code == 0
    assert out["publishable_key_id"] in capsys.readouterr().out

    # Refusals are one clear line, not a traceback.
    code = await asyncio.to_thread(
        rased_cli, ["org", "list", "--target", f"127.0.0.1:{admin.port}", "--token", "nope"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "refused the credential" in err
    assert "Traceback" not in err
    closed = f"127.0.0.1:{_closed_port()}"
    code = await asyncio.to_thread(
        rased_cli, ["org", "list", "--target", closed, "--token", OPERATOR, "--timeout", "3"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot reach the admin service" in err


def _closed_port() -> int:
    """Return a local port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
