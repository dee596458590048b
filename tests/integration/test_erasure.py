"""Subject erasure (GDPR) through AdminService, on real PostgreSQL, Redis and Cassandra.

Each test puts a subject's data into every store the way the pipeline does: batches go
through ingestion's buffering into Redis (a trigger batch flushes its transaction, which the
persistence worker's domain writes to Cassandra; the publisher between them hands the
compiled transaction straight over instead of through Kafka), a result through the scoring
worker's result store, deliveries and their attempts through the notification worker's
store, the pending status through ingestion's, and a profile through scoring's profile
store. Next to it: another user's session in the same organization, and the same session,
user and transaction ids in another organization. The erasure runs through the admin
service over gRPC; then every store is queried directly.

The module migrates its own PostgreSQL database and Cassandra keyspace once; each test has
its own organizations and its own Redis key prefixes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from cassandra.cluster import Session
from grpc import aio
from pydantic import SecretStr

from rased.adapters.cassandra.data_keys import CassandraDataKeys
from rased.adapters.cassandra.event_store import CassandraEventStore
from rased.adapters.cassandra.session import cassandra_session, execute
from rased.adapters.postgres.erasure import ErasureJobStore
from rased.adapters.postgres.keys import ApiKeyKind, ApiKeyStore, OrganizationStore
from rased.adapters.postgres.results import PostgresPendingTransactions, PostgresResultStore
from rased.adapters.postgres.retention import PostgresRetention
from rased.adapters.postgres.webhook_deliveries import (
    AttemptOutcome,
    DeliveryStatus,
    NewDelivery,
    WebhookDeliveryStore,
)
from rased.adapters.postgres.webhooks import WebhookEndpointStore
from rased.adapters.redis.event_buffer import RedisEventBuffer
from rased.adapters.redis.profiles import RedisProfileStore
from rased.adapters.redis.rate_limits import (
    RATE_LIMIT_PREFIX,
    RedisRateLimits,
    session_limit_key,
)
from rased.cli.main import main as rased_cli
from rased.common.crypto import MasterKeyring, generate_key, key_spec_entry
from rased.common.server import GrpcServer
from rased.devstack.base import ManagedServer
from rased.scoring.profile import UserProfile
from rased.services.admin.erasure import RunnerPolicy
from rased.services.admin.main import build_server
from rased.services.admin.settings import AdminSettings
from rased.services.ingestion.buffer_store import TransactionKey
from rased.services.ingestion.buffering import TransactionBuffering, frame_batch
from rased.services.ingestion.ports import BufferPolicy
from rased.services.persistence.persisting import TransactionPersister
from rased.services.results.ports import PendingStatus
from rased.v1 import admin_pb2, admin_pb2_grpc, events_pb2, ingest_pb2, pipeline_pb2, scoring_pb2

pytestmark = pytest.mark.timeout(90)

MASTER = key_spec_entry("test-1", generate_key())
OPERATOR = "op-" + uuid.uuid4().hex + uuid.uuid4().hex
# The flushed transaction's events straddle a UTC midnight: it is listed on two days.
MIDNIGHT_MS = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
DAYS = ("2026-02-28", "2026-03-01")
# Fast enough that a job is done in well under a second, a failed one retried at once.
POLICY = RunnerPolicy(
    poll_interval=timedelta(milliseconds=200),
    lease=timedelta(seconds=5),
    retry_initial=timedelta(milliseconds=200),
    retry_max=timedelta(milliseconds=400),
)
SUCCEEDED = admin_pb2.ERASURE_STATUS_SUCCEEDED


def _bearer(credential: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {credential}"),)


def _closed_port() -> int:
    """Return a local port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Tenant:
    """An organization with a secret key, a publishable key and a webhook endpoint."""

    organization_id: str
    secret: str
    publishable: str
    endpoint_id: str


@dataclass
class Subject:
    """What was seeded for one user of one organization, to find it again."""

    tenant: Tenant
    user: str
    sessions: list[str]
    transactions: list[str]
    events: int = 0  # events written to Cassandra


@dataclass
class Env:
    """Every store, reached directly, and the pieces that write to them as the pipeline does."""

    dsn: str
    keyspace: str
    host: str
    redis_port: int
    cassandra_port: int
    pool: asyncpg.Pool
    redis: aioredis.Redis
    cassandra: Session
    buffer_prefix: str
    profile_prefix: str
    buffer: RedisEventBuffer
    buffering: TransactionBuffering
    persisted: list[pipeline_pb2.CompiledTransaction] = field(default_factory=list)

    def settings(self, **changes: Any) -> AdminSettings:
        values: dict[str, Any] = {
            "grpc_port": 0,
            "postgres_dsn": self.dsn,
            "master_keys": SecretStr(MASTER),
            "operator_token": SecretStr(OPERATOR),
            "shutdown_drain": timedelta(0),
            "shutdown_grace": timedelta(seconds=2),
            "redis_url": f"redis://{self.host}:{self.redis_port}/0",
            "redis_buffer_prefix": self.buffer_prefix,
            "redis_profile_prefix": self.profile_prefix,
            "cassandra_contact_points": [self.host],
            "cassandra_port": self.cassandra_port,
            "cassandra_keyspace": self.keyspace,
            "cassandra_request_timeout": timedelta(seconds=3),
            "erasure_poll_interval": POLICY.poll_interval,
            "erasure_lease": POLICY.lease,
            "erasure_retry_initial": POLICY.retry_initial,
            "erasure_retry_max": POLICY.retry_max,
        }
        return AdminSettings(**{**values, **changes})

    async def tenant(self, name: str) -> Tenant:
        org = await OrganizationStore(self.pool).create(f"{name}-{uuid.uuid4().hex[:8]}")
        keys = ApiKeyStore(self.pool)
        _, secret = await keys.create(org, ApiKeyKind.SECRET)
        _, publishable = await keys.create(org, ApiKeyKind.PUBLISHABLE)
        endpoint, _ = await WebhookEndpointStore(self.pool, MasterKeyring.from_spec(MASTER)).create(
            org, "https://hooks.example.com/rased"
        )
        return Tenant(org, secret, publishable, endpoint.endpoint_id)

    # -- putting a subject's data where the pipeline puts it ------------------------------

    async def seed(self, tenant: Tenant, user: str, sessions: tuple[str, str]) -> Subject:
        """Give `user` two sessions: one flushed, scored, notified and buffering again, one
        whose only trace is a segment left in flushing (its publish never finished)."""
        org = tenant.organization_id
        scored, flushing = sessions
        txn_done, txn_open, txn_stuck = f"{scored}-t1", f"{scored}-t2", f"{flushing}-t1"
        before = len(self.persisted)
        # Two batches of the first transaction, the second a trigger: flushed and persisted.
        first = _batch(scored, txn_done, "b1", MIDNIGHT_MS - 30, count=3)
        second = _batch(scored, txn_done, "b2", MIDNIGHT_MS + 20, count=2, trigger=True)
        statuses = PostgresPendingTransactions(self.pool)
        for batch in (first, second):
            outcome = await self.buffering.accept(org, user, batch)
            await statuses.mark(org, txn_done, PendingStatus.BUFFERED)
        assert outcome.disposition == ingest_pb2.BATCH_DISPOSITION_FLUSHED
        assert len(self.persisted) == before + 1
        # Scored (the result carries the user id) and notified (one failed attempt so far).
        compiled = self.persisted[-1]
        assert compiled.user_id == user
        stored = await PostgresResultStore(self.pool).save(_result(compiled))
        assert stored
        deliveries = WebhookDeliveryStore(self.pool)
        made = await deliveries.create(
            org,
            "transaction.scored",
            txn_done,
            0,
            scored,
            [NewDelivery(tenant.endpoint_id, '{"type":"transaction.scored"}')],
        )
        assert made == 1
        # A second transaction of the session, still buffering.
        await self.buffering.accept(org, user, _batch(scored, txn_open, "b3", MIDNIGHT_MS + 90))
        await statuses.mark(org, txn_open, PendingStatus.BUFFERED)
        # The other session: moved to flushing, never published (a crash before the publish).
        stuck = _batch(flushing, txn_stuck, "b4", MIDNIGHT_MS + 120)
        await self.buffer.append(
            TransactionKey(org, flushing, txn_stuck),
            stuck.batch_id,
            frame_batch(stuck.SerializeToString()),
            stuck.ByteSize(),
            len(stuck.events),
            stuck.events[0].timestamp_ms,
            stuck.events[0].timestamp_ms,
            user,
            MIDNIGHT_MS + 130,
            ingest_pb2.FLUSH_REASON_TRIGGER,
        )
        # Ingestion's rate-limit buckets of both sessions (a session's lasts an hour here).
        limits = RedisRateLimits(
            self.redis, "1000/hour", "1/hour", key_prefix=self.buffer_prefix + RATE_LIMIT_PREFIX
        )
        for session in sessions:
            await limits.hit(org, session)
        # What scoring learned of the user.
        profiles = RedisProfileStore(self.redis, self.profile_prefix)
        await profiles.save(org, user, UserProfile(sessions=2, countries={"DE": 2}))
        return Subject(tenant, user, list(sessions), [txn_done, txn_open, txn_stuck], events=5)

    async def fail_deliveries_once(self, *tenants: Tenant) -> int:
        """Attempt every due delivery once and record a failure, as the notification
        worker does after a 503; return how many were the tenants'."""
        store = WebhookDeliveryStore(self.pool)
        claimed = await store.claim_due(100, timedelta(minutes=1))
        for delivery in claimed:
            outcome = AttemptOutcome(datetime.now(UTC), 12, 503, "HTTP 503")
            later = datetime.now(UTC) + timedelta(hours=1)
            assert await store.record(delivery, outcome, DeliveryStatus.PENDING, later)
        orgs = {tenant.organization_id for tenant in tenants}
        return sum(delivery.organization_id in orgs for delivery in claimed)

    # -- reading every store directly ------------------------------------------------------

    async def footprint(self, subject: Subject) -> dict[str, int]:
        """Count what each store holds of the subject, in the job's own terms."""
        org, org_uuid = subject.tenant.organization_id, uuid.UUID(subject.tenant.organization_id)
        sessions, txns = subject.sessions, subject.transactions
        pg = self.pool
        counts = {
            "postgres_results": await pg.fetchval(
                "SELECT count(*) FROM results WHERE organization_id = $1 "
                "AND (session_id = ANY($2::text[]) OR user_id = $3)",
                org_uuid,
                sessions,
                subject.user,
            ),
            "postgres_webhook_deliveries": await pg.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE organization_id = $1 "
                "AND (session_id = ANY($2::text[]) OR transaction_id = ANY($3::text[]))",
                org_uuid,
                sessions,
                txns,
            ),
            "postgres_webhook_delivery_attempts": await pg.fetchval(
                "SELECT count(*) FROM webhook_delivery_attempts a JOIN webhook_deliveries d "
                "USING (delivery_id) WHERE d.organization_id = $1 "
                "AND d.transaction_id = ANY($2::text[])",
                org_uuid,
                txns,
            ),
            "postgres_transaction_status": await pg.fetchval(
                "SELECT count(*) FROM transaction_status WHERE organization_id = $1 "
                "AND transaction_id = ANY($2::text[])",
                org_uuid,
                txns,
            ),
            "cassandra_events": 0,
            "cassandra_transactions_by_day": 0,
            "cassandra_transactions_by_session": 0,
        }
        for txn in txns:
            counts["cassandra_events"] += len(
                await execute(
                    self.cassandra,
                    "SELECT sequence FROM events WHERE organization_id = %s "
                    "AND transaction_id = %s",
                    (org, txn),
                )
            )
        for day in DAYS:
            rows = await execute(
                self.cassandra,
                "SELECT transaction_id FROM transactions_by_day "
                "WHERE organization_id = %s AND day = %s",
                (org, day),
            )
            counts["cassandra_transactions_by_day"] += sum(r.transaction_id in txns for r in rows)
        for session in sessions:
            counts["cassandra_transactions_by_session"] += len(
                await execute(
                    self.cassandra,
                    "SELECT transaction_id FROM transactions_by_session "
                    "WHERE organization_id = %s AND session_id = %s",
                    (org, session),
                )
            )
        # Redis: every key under the buffer prefix, and every index member, naming a session.
        tags = tuple(f"{org}/{session}/" for session in sessions)
        keys = [k.decode() async for k in self.redis.scan_iter(match=f"{self.buffer_prefix}*")]
        counts["redis_buffer_keys"] = sum(
            "events:{" in k and any(tag in k for tag in tags) for k in keys
        )
        limits = self.buffer_prefix + RATE_LIMIT_PREFIX
        counts["redis_rate_limit_keys"] = sum(
            [await self.redis.exists(session_limit_key(limits, org, s)) for s in sessions]
        )
        counts["redis_index_entries"] = 0
        indexes = (f"{self.buffer_prefix}deadlines:", f"{self.buffer_prefix}flushes:")
        for key in keys:
            if key.startswith(indexes):
                members = [m async for m, _ in self.redis.zscan_iter(key)]
                counts["redis_index_entries"] += sum(m.decode().startswith(tags) for m in members)
        profile = RedisProfileStore(self.redis, self.profile_prefix).key(org, subject.user)
        counts["redis_profiles"] = await self.redis.exists(profile)
        return {name: int(value) for name, value in counts.items()}


def _batch(
    session: str, txn: str, batch_id: str, start_ms: int, count: int = 1, trigger: bool = False
) -> events_pb2.EventBatch:
    batch = events_pb2.EventBatch(
        batch_id=f"{batch_id}-{uuid.uuid4().hex[:8]}",
        session_id=session,
        transaction_id=txn,
        client_sent_at_ms=start_ms + 100,
        trigger=trigger,
    )
    for index in range(count):
        batch.events.add(
            timestamp_ms=start_ms + index * 20,
            pointer=events_pb2.PointerEvent(
                action=events_pb2.POINTER_ACTION_MOVE, x=float(index), y=1.0
            ),
        )
    return batch


def _result(compiled: pipeline_pb2.CompiledTransaction) -> scoring_pb2.TransactionResult:
    return scoring_pb2.TransactionResult(
        organization_id=compiled.organization_id,
        session_id=compiled.session_id,
        transaction_id=compiled.transaction_id,
        segment=compiled.segment,
        user_id=compiled.user_id,
        scores=scoring_pb2.Scores(
            bot_detection=0.1,
            keystroke_dynamics=0.2,
            location_anomaly=0.1,
            device_fingerprint=0.1,
            behavioral_anomaly=0.2,
            overall_confidence=0.9,
        ),
        risk_level=scoring_pb2.RISK_LEVEL_LOW,
        model_version="test:1",
        processing_time_ms=7,
    )


class PersistingPublisher:
    """Ingestion's publisher wired straight to the persistence worker's domain (no Kafka)."""

    def __init__(self, persister: TransactionPersister, seen: list[Any]) -> None:
        self._persister = persister
        self._seen = seen

    async def publish_compiled_payload(
        self, organization_id: str, transaction_id: str, payload: bytes, *, redelivery: bool = False
    ) -> None:
        """Store the compiled transaction in Cassandra, as the worker does on consuming it."""
        compiled = pipeline_pb2.CompiledTransaction.FromString(payload)
        await self._persister.persist(compiled)
        self._seen.append(compiled)


@pytest.fixture
async def env(
    module_database: str,
    module_keyspace: str,
    redis_server: ManagedServer,
    cassandra_server: ManagedServer,
) -> AsyncIterator[Env]:
    stack = redis_server.settings
    tag = uuid.uuid4().hex[:10]
    async with AsyncExitStack() as resources:
        pool = await asyncpg.create_pool(module_database, min_size=1, max_size=4)
        resources.push_async_callback(pool.close)
        client = aioredis.Redis(host=stack.host, port=stack.redis_port)
        resources.push_async_callback(client.aclose)
        session = await resources.enter_async_context(
            cassandra_session([stack.host], stack.cassandra_port, module_keyspace)
        )
        persisted: list[pipeline_pb2.CompiledTransaction] = []
        persister = TransactionPersister(
            await CassandraEventStore.prepare(session),
            CassandraDataKeys(session, MasterKeyring.from_spec(MASTER), 0),
            PostgresRetention(pool, 90),
        )
        policy = BufferPolicy()
        buffer = RedisEventBuffer(client, policy, key_prefix=f"t{tag}:")
        yield Env(
            dsn=module_database,
            keyspace=module_keyspace,
            host=stack.host,
            redis_port=stack.redis_port,
            cassandra_port=stack.cassandra_port,
            pool=pool,
            redis=client,
            cassandra=session,
            buffer_prefix=f"t{tag}:",
            profile_prefix=f"t{tag}p:",
            buffer=buffer,
            buffering=TransactionBuffering(
                buffer, PersistingPublisher(persister, persisted), policy
            ),
            persisted=persisted,
        )
        async for key in client.scan_iter(match=f"t{tag}*"):
            await client.delete(key)


@dataclass
class Admin:
    """A running admin service and a client of it."""

    server: GrpcServer
    port: int
    stub: admin_pb2_grpc.AdminServiceAsyncStub

    async def erase(
        self, tenant: Tenant, kind: admin_pb2.SubjectKind.ValueType, subject: str
    ) -> admin_pb2.ErasureJob:
        reply = await self.stub.EraseSubject(
            admin_pb2.EraseSubjectRequest(
                organization_id=tenant.organization_id, subject_kind=kind, subject_id=subject
            ),
            metadata=_bearer(tenant.secret),
        )
        return reply.job

    async def job(self, tenant: Tenant, job_id: str) -> admin_pb2.ErasureJob:
        reply = await self.stub.GetErasureJob(
            admin_pb2.GetErasureJobRequest(organization_id=tenant.organization_id, job_id=job_id),
            metadata=_bearer(tenant.secret),
        )
        return reply.job

    async def wait(
        self,
        tenant: Tenant,
        job_id: str,
        status: admin_pb2.ErasureStatus.ValueType = SUCCEEDED,
        seconds: float = 20,
    ) -> admin_pb2.ErasureJob:
        async with asyncio.timeout(seconds):
            while True:
                job = await self.job(tenant, job_id)
                if job.status == status:
                    return job
                await asyncio.sleep(0.05)


@pytest.fixture
async def start_admin(env: Env) -> AsyncIterator[Any]:
    """Start an admin service with the test's settings (and changes); stop them all after."""
    async with AsyncExitStack() as resources:

        async def start(**changes: Any) -> Admin:
            server = await build_server(env.settings(**changes))
            port = await server.start()
            resources.push_async_callback(server.shutdown)
            channel = aio.insecure_channel(f"127.0.0.1:{port}")
            resources.push_async_callback(channel.close)
            return Admin(server, port, admin_pb2_grpc.AdminServiceStub(channel))

        yield start


async def _rpc_error(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details() or ""


def _nothing(footprint: dict[str, int]) -> dict[str, int]:
    return dict.fromkeys(footprint, 0)


async def test_erasing_a_user_leaves_nothing_of_them_in_any_store(
    env: Env, start_admin: Any
) -> None:
    bank, other_bank = await env.tenant("bank"), await env.tenant("other")
    user = await env.seed(bank, "user-7", ("sess-a", "sess-b"))
    # Another user of the same bank, and the very same ids in another organization.
    neighbour = await env.seed(bank, "user-8", ("sess-c", "sess-d"))
    twin = await env.seed(other_bank, "user-7", ("sess-a", "sess-b"))
    assert await env.fail_deliveries_once(bank, other_bank) == 3
    subjects = (user, neighbour, twin)
    before = {id(s): await env.footprint(s) for s in subjects}
    # Everything is there to be erased (the footprint sees each kind of data).
    assert all(before[id(user)].values()), before[id(user)]
    assert before[id(user)]["cassandra_events"] == user.events
    assert before[id(user)]["cassandra_transactions_by_day"] == len(DAYS)

    admin = await start_admin()
    job = await admin.erase(bank, admin_pb2.SUBJECT_KIND_USER, "user-7")
    assert (job.subject_kind, job.subject_id) == (admin_pb2.SUBJECT_KIND_USER, "user-7")
    assert job.status in (admin_pb2.ERASURE_STATUS_PENDING, admin_pb2.ERASURE_STATUS_RUNNING)
    done = await admin.wait(bank, job.job_id)

    assert await env.footprint(user) == _nothing(before[id(user)])
    # The job says what it erased, store by store: exactly what was there.
    assert dict(done.erased_counts) == before[id(user)]
    assert done.HasField("finish_time")
    assert done.error == ""
    # The neighbour and the other organization's same-named subject are untouched.
    assert await env.footprint(neighbour) == before[id(neighbour)]
    assert await env.footprint(twin) == before[id(twin)]


async def test_erasing_a_session_keeps_the_users_other_sessions_and_profile(
    env: Env, start_admin: Any
) -> None:
    bank = await env.tenant("bank")
    user = await env.seed(bank, "user-7", ("sess-a", "sess-b"))
    session_a = Subject(bank, "nobody", ["sess-a"], user.transactions[:2])
    session_b = Subject(bank, "nobody", ["sess-b"], user.transactions[2:])
    before_a, before_b = await env.footprint(session_a), await env.footprint(session_b)

    admin = await start_admin()
    job = await admin.erase(bank, admin_pb2.SUBJECT_KIND_SESSION, "sess-a")
    done = await admin.wait(bank, job.job_id)

    assert await env.footprint(session_a) == _nothing(before_a)
    # A session erasure leaves the user's profile alone: it does not even look.
    assert dict(done.erased_counts) == {k: v for k, v in before_a.items() if k != "redis_profiles"}
    assert await env.footprint(session_b) == before_b
    assert before_b["redis_buffer_keys"] > 0
    assert await env.footprint(user) == {
        **_nothing(before_a),
        **{k: v for k, v in before_b.items() if k.startswith("redis_")},
        "redis_profiles": 1,
    }


async def test_erasing_twice_is_harmless(env: Env, start_admin: Any) -> None:
    bank = await env.tenant("bank")
    user = await env.seed(bank, "user-7", ("sess-a", "sess-b"))
    neighbour = await env.seed(bank, "user-8", ("sess-c", "sess-d"))
    before = await env.footprint(neighbour)
    admin = await start_admin()

    first = await admin.wait(
        bank, (await admin.erase(bank, admin_pb2.SUBJECT_KIND_USER, "user-7")).job_id
    )
    second = await admin.wait(
        bank, (await admin.erase(bank, admin_pb2.SUBJECT_KIND_USER, "user-7")).job_id
    )
    assert first.job_id != second.job_id
    assert sum(first.erased_counts.values()) > 0
    # The second job found nothing left to erase, and says so.
    assert set(second.erased_counts.values()) <= {0}
    assert await env.footprint(user) == _nothing(before)
    assert await env.footprint(neighbour) == before
    # The first job's record is unchanged by the second.
    assert await admin.job(bank, first.job_id) == first


async def test_another_organizations_key_cannot_erase_or_read_its_jobs(
    env: Env, start_admin: Any
) -> None:
    victim, attacker = await env.tenant("victim"), await env.tenant("attacker")
    subject = await env.seed(victim, "user-7", ("sess-a", "sess-b"))
    before = await env.footprint(subject)
    admin = await start_admin()
    job = await admin.erase(victim, admin_pb2.SUBJECT_KIND_SESSION, "sess-nothing")
    await admin.wait(victim, job.job_id)

    as_attacker = _bearer(attacker.secret)
    missing_org = str(uuid.uuid4())
    # Naming the victim's organization answers exactly what a missing one does.
    for org in (victim.organization_id, missing_org):
        erase = admin.stub.EraseSubject(
            admin_pb2.EraseSubjectRequest(
                organization_id=org,
                subject_kind=admin_pb2.SUBJECT_KIND_USER,
                subject_id="user-7",
            ),
            metadata=as_attacker,
        )
        get = admin.stub.GetErasureJob(
            admin_pb2.GetErasureJobRequest(organization_id=org, job_id=job.job_id),
            metadata=as_attacker,
        )
        for call in (erase, get):
            assert await _rpc_error(call) == (grpc.StatusCode.NOT_FOUND, "organization not found")
    # Its own organization with the victim's job id: no such job, as for any unknown id.
    for job_id in (job.job_id, str(uuid.uuid4())):
        own = admin.stub.GetErasureJob(
            admin_pb2.GetErasureJobRequest(organization_id=attacker.organization_id, job_id=job_id),
            metadata=as_attacker,
        )
        assert await _rpc_error(own) == (grpc.StatusCode.NOT_FOUND, "erasure job not found")
    # A publishable key may not erase, not even in its own organization.
    code, _ = await _rpc_error(
        admin.stub.EraseSubject(
            admin_pb2.EraseSubjectRequest(
                organization_id=victim.organization_id,
                subject_kind=admin_pb2.SUBJECT_KIND_USER,
                subject_id="user-7",
            ),
            metadata=_bearer(victim.publishable),
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED

    # Nothing was erased and no job was made for the victim but its own.
    await asyncio.sleep(POLICY.poll_interval.total_seconds() * 2)
    assert await env.footprint(subject) == before
    jobs = await env.pool.fetch(
        "SELECT job_id FROM erasure_jobs WHERE organization_id = ANY($1::uuid[])",
        [victim.organization_id, attacker.organization_id],
    )
    assert [str(r["job_id"]) for r in jobs] == [job.job_id]
    # The operator reads the victim's job.
    got = await admin.stub.GetErasureJob(
        admin_pb2.GetErasureJobRequest(organization_id=victim.organization_id, job_id=job.job_id),
        metadata=_bearer(OPERATOR),
    )
    assert got.job.status == SUCCEEDED


async def test_bad_requests_are_refused_clearly(env: Env, start_admin: Any) -> None:
    bank = await env.tenant("bank")
    admin = await start_admin()
    cases = [
        admin_pb2.EraseSubjectRequest(
            organization_id=bank.organization_id, subject_kind=admin_pb2.SUBJECT_KIND_USER
        ),
        admin_pb2.EraseSubjectRequest(organization_id=bank.organization_id, subject_id="sess-a"),
        admin_pb2.EraseSubjectRequest(
            organization_id=bank.organization_id,
            subject_kind=admin_pb2.SUBJECT_KIND_SESSION,
            subject_id="x" * 129,
        ),
        admin_pb2.EraseSubjectRequest(
            organization_id="not-a-uuid",
            subject_kind=admin_pb2.SUBJECT_KIND_SESSION,
            subject_id="sess-a",
        ),
    ]
    for request in cases:
        code, _ = await _rpc_error(admin.stub.EraseSubject(request, metadata=_bearer(bank.secret)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await _rpc_error(
        admin.stub.GetErasureJob(
            admin_pb2.GetErasureJobRequest(organization_id=bank.organization_id, job_id="nope"),
            metadata=_bearer(bank.secret),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    jobs = await env.pool.fetchval(
        "SELECT count(*) FROM erasure_jobs WHERE organization_id = $1",
        uuid.UUID(bank.organization_id),
    )
    assert jobs == 0


async def test_a_job_fails_while_cassandra_is_down_and_is_retried(
    env: Env, start_admin: Any
) -> None:
    bank = await env.tenant("bank")
    user = await env.seed(bank, "user-7", ("sess-a", "sess-b"))
    assert await env.fail_deliveries_once(bank) == 1
    before = await env.footprint(user)

    down = await start_admin(cassandra_port=_closed_port())
    job = await down.erase(bank, admin_pb2.SUBJECT_KIND_USER, "user-7")
    failed = await down.wait(bank, job.job_id, admin_pb2.ERASURE_STATUS_FAILED)
    assert failed.error == "Cassandra unavailable: NoHostAvailable"
    assert not failed.HasField("finish_time")
    # It is retried while Cassandra stays down: attempts go on, the status stays FAILED.
    jobs = ErasureJobStore(env.pool)
    await asyncio.sleep(POLICY.retry_max.total_seconds() * 3)
    record = await jobs.get(bank.organization_id, job.job_id)
    assert record is not None
    assert record.attempts >= 2
    assert record.status.value in ("failed", "running")
    await down.server.shutdown()
    # A failed attempt looks up every store before deleting anything: all is still there.
    assert await env.footprint(user) == before

    # An admin service whose Cassandra is reachable takes the job over and completes it.
    up = await start_admin()
    done = await up.wait(bank, job.job_id)
    assert await env.footprint(user) == _nothing(before)
    assert dict(done.erased_counts) == before
    assert done.error == ""


async def test_cli_requests_an_erasure_and_waits_for_it(
    env: Env, start_admin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bank = await env.tenant("bank")
    user = await env.seed(bank, "user-7", ("sess-a", "sess-b"))
    before = await env.footprint(user)
    admin = await start_admin()
    target = ["--target", f"127.0.0.1:{admin.port}", "--token", OPERATOR]
    org = bank.organization_id

    code = await asyncio.to_thread(
        rased_cli,
        [
            "erasure",
            "request",
            org,
            "--user",
            "user-7",
            "--wait",
            "--poll-interval",
            "0.1",
            "--json",
            *target,
        ],
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (out["status"], out["subject_kind"], out["subject_id"]) == (
        "succeeded",
        "user",
        "user-7",
    )
    assert out["erased_counts"] == before
    assert await env.footprint(user) == _nothing(before)

    code = await asyncio.to_thread(rased_cli, ["erasure", "status", org, out["job_id"], *target])
    text = capsys.readouterr().out
    assert code == 0
    assert f"erasure job {out['job_id']}: succeeded (user erasure)" in text
    assert f"cassandra_events{' ' * 20} {user.events}" in text

    # An unknown job, or the job under another organization: one clear line, no traceback.
    other = await env.tenant("other")
    code = await asyncio.to_thread(
        rased_cli, ["erasure", "status", other.organization_id, out["job_id"], *target]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "erasure job not found" in err
    assert "Traceback" not in err
