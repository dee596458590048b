"""The results service through a real gRPC client, on a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from grpc import aio

from rased.adapters.postgres.keys import ApiKeyKind, ApiKeyStore, OrganizationStore
from rased.adapters.postgres.results import (
    LISTENER_APPLICATION_NAME,
    PostgresPendingTransactions,
    PostgresResultStore,
)
from rased.common.server import GrpcServer
from rased.devstack.base import ManagedServer
from rased.devstack.postgres import PostgresServer
from rased.services.results.main import build_server
from rased.services.results.ports import PendingStatus
from rased.services.results.settings import ResultsSettings
from rased.v1 import results_pb2, results_pb2_grpc, scoring_pb2

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def admin_dsn(postgres_server: ManagedServer) -> str:
    """The superuser's DSN (to terminate connections)."""
    assert isinstance(postgres_server, PostgresServer)
    return postgres_server.admin_dsn()


@dataclass
class Tenant:
    """An organization and its keys."""

    organization_id: str
    secret_key: str
    publishable_key: str

    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.secret_key}"),)


@dataclass
class Deployment:
    """A results server, two tenants, and the stores a test writes through."""

    server: GrpcServer
    channel: aio.Channel
    store: PostgresResultStore
    pending: PostgresPendingTransactions
    pool: asyncpg.Pool
    bank: Tenant
    other: Tenant

    def stub(self) -> results_pb2_grpc.ResultsServiceAsyncStub:
        return results_pb2_grpc.ResultsServiceStub(self.channel)


async def _tenant(pool: asyncpg.Pool, name: str) -> Tenant:
    org = await OrganizationStore(pool).create(name)
    keys = ApiKeyStore(pool)
    _, secret = await keys.create(org, ApiKeyKind.SECRET)
    _, publishable = await keys.create(org, ApiKeyKind.PUBLISHABLE)
    return Tenant(org, secret, publishable)


@pytest.fixture
async def deployment(module_database: str) -> AsyncIterator[Deployment]:
    pool = await asyncpg.create_pool(module_database, min_size=1, max_size=5)
    tag = uuid.uuid4().hex[:8]
    bank, other = await _tenant(pool, f"bank-{tag}"), await _tenant(pool, f"other-{tag}")
    settings = ResultsSettings(
        grpc_port=0,
        postgres_dsn=module_database,
        shutdown_drain=timedelta(0),
        shutdown_grace=timedelta(seconds=5),
        # Long enough that a stream only gets a result promptly through LISTEN/NOTIFY.
        watch_poll_interval=timedelta(seconds=60),
        watch_batch_size=4,
        listen_check_interval=timedelta(milliseconds=300),
    )
    server = await build_server(settings)
    port = await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    yield Deployment(
        server,
        channel,
        PostgresResultStore(pool),
        PostgresPendingTransactions(pool),
        pool,
        bank,
        other,
    )
    await channel.close()
    await server.shutdown()
    await pool.close()


def _result(
    tenant: Tenant,
    txn: str,
    segment: int = 0,
    risk: scoring_pb2.RiskLevel.ValueType = scoring_pb2.RISK_LEVEL_LOW,
    scored_at: datetime | None = None,
) -> scoring_pb2.TransactionResult:
    result = scoring_pb2.TransactionResult(
        organization_id=tenant.organization_id,
        session_id="sess-1",
        transaction_id=txn,
        segment=segment,
        user_id="user-7",
        scores=scoring_pb2.Scores(
            bot_detection=0.91,
            keystroke_dynamics=0.2,
            location_anomaly=0.05,
            device_fingerprint=0.3,
            behavioral_anomaly=0.4,
            overall_confidence=0.8,
        ),
        risk_level=risk,
        recommendations=[scoring_pb2.RECOMMENDATION_BLOCK, scoring_pb2.RECOMMENDATION_CHALLENGE],
        reason_codes=[
            scoring_pb2.ReasonCode(
                code="POINTER_STRAIGHT_LINES",
                description="Mouse moved in perfectly straight lines",
                score="bot_detection",
                weight=0.7,
            )
        ],
        model_version="fraud-ensemble:3",
        processing_time_ms=42,
        degraded=segment % 2 == 1,
    )
    if scored_at is not None:
        result.scored_at.FromDatetime(scored_at)
    return result


async def _code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


async def test_a_redelivered_result_stays_one_row(deployment: Deployment) -> None:
    result = _result(deployment.bank, "txn-dup")
    assert await deployment.store.save(result) is True
    changed = _result(deployment.bank, "txn-dup", risk=scoring_pb2.RISK_LEVEL_CRITICAL)
    assert await deployment.store.save(changed) is False
    rows = await deployment.pool.fetch(
        "SELECT risk_level FROM results WHERE transaction_id = 'txn-dup'"
    )
    assert [r["risk_level"] for r in rows] == ["LOW"]
    # The redelivery handed out no cursor: the organization's cursors have no gap.
    assert await deployment.store.save(_result(deployment.bank, "txn-next")) is True
    stored = await deployment.store.get(deployment.bank.organization_id, "txn-next", 0)
    assert stored is not None and stored.cursor == 2


async def test_a_batch_save_keeps_cursors_gap_free_per_organization(
    deployment: Deployment,
) -> None:
    bank, other = deployment.bank, deployment.other
    store = deployment.store
    assert await store.save(_result(bank, "txn-b0")) is True  # cursor 1
    batch = [
        _result(bank, "txn-b1"),
        _result(other, "txn-b1"),  # the same id in another organization: its own row
        _result(bank, "txn-b0", risk=scoring_pb2.RISK_LEVEL_CRITICAL),  # a redelivery
        _result(bank, "txn-b2"),
        _result(bank, "txn-b1"),  # the same segment twice in one poll
    ]
    saved = await store.save_many(batch)
    assert [row is not None for row in saved] == [True, True, False, True, False]
    assert [row.cursor for row in saved if row is not None] == [2, 1, 3]
    assert saved[0] is not None and saved[0].organization_id == bank.organization_id
    assert saved[1] is not None and saved[1].organization_id == other.organization_id
    # What the batch read back is what is stored; the redelivery changed nothing.
    keys = [(r.organization_id, r.transaction_id, r.segment) for r in batch]
    read = await store.get_many([*keys, (bank.organization_id, "txn-missing", 0), ("x", "y", 0)])
    assert [r.cursor if r else None for r in read] == [2, 1, 1, 3, 2, None, None]
    assert read[2] is not None and read[2].risk_level == scoring_pb2.RISK_LEVEL_LOW
    # A batch of redeliveries only hands out no cursor either.
    assert await store.save_many([_result(bank, "txn-b2")]) == [None]
    assert await store.save(_result(bank, "txn-b3")) is True
    last = await store.get(bank.organization_id, "txn-b3", 0)
    assert last is not None and last.cursor == 4


async def test_pending_marks_in_one_statement(deployment: Deployment) -> None:
    bank, other = deployment.bank, deployment.other
    pending = deployment.pending
    await pending.mark_many(
        [(bank.organization_id, "txn-p1"), (bank.organization_id, "txn-p1")],
        PendingStatus.BUFFERED,
    )
    await pending.mark_many(
        [(bank.organization_id, "txn-p1"), (other.organization_id, "txn-p2")],
        PendingStatus.SCORING,
    )
    assert await pending.status(bank.organization_id, "txn-p1") is PendingStatus.SCORING
    assert await pending.status(other.organization_id, "txn-p2") is PendingStatus.SCORING
    assert await pending.status(bank.organization_id, "txn-p2") is None


async def test_get_result_returns_the_latest_segment(deployment: Deployment) -> None:
    bank = deployment.bank
    await deployment.store.save(_result(bank, "txn-seg", 0, scored_at=T0))
    await deployment.store.save(
        _result(bank, "txn-seg", 1, scoring_pb2.RISK_LEVEL_HIGH, T0 + timedelta(seconds=5))
    )
    reply = await deployment.stub().GetResult(
        results_pb2.GetResultRequest(transaction_id="txn-seg"), metadata=bank.auth()
    )
    assert reply.status == results_pb2.RESULT_STATUS_SCORED
    got = reply.result
    assert (got.segment, got.risk_level, got.degraded) == (1, scoring_pb2.RISK_LEVEL_HIGH, True)
    assert got.organization_id == bank.organization_id
    assert got.scores.bot_detection == pytest.approx(0.91)
    assert list(got.recommendations) == [
        scoring_pb2.RECOMMENDATION_BLOCK,
        scoring_pb2.RECOMMENDATION_CHALLENGE,
    ]
    assert got.reason_codes[0].code == "POINTER_STRAIGHT_LINES"
    assert got.reason_codes[0].weight == pytest.approx(0.7)
    assert got.scored_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=5)
    assert (got.user_id, got.model_version, got.processing_time_ms) == (
        "user-7",
        "fraud-ensemble:3",
        42,
    )
    assert got.cursor > 0


async def test_another_orgs_transaction_is_not_found_like_a_missing_one(
    deployment: Deployment,
) -> None:
    await deployment.store.save(_result(deployment.other, "txn-theirs"))
    await deployment.pending.mark(
        deployment.other.organization_id, "txn-theirs-pending", PendingStatus.SCORING
    )
    stub = deployment.stub()
    details = []
    for txn in ("txn-theirs", "txn-theirs-pending", "txn-nobody-has"):
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.GetResult(
                results_pb2.GetResultRequest(transaction_id=txn), metadata=deployment.bank.auth()
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        details.append(caught.value.details())
    assert len(set(details)) == 1
    # The owner sees its own.
    reply = await stub.GetResult(
        results_pb2.GetResultRequest(transaction_id="txn-theirs"),
        metadata=deployment.other.auth(),
    )
    assert reply.status == results_pb2.RESULT_STATUS_SCORED


async def test_only_secret_keys_are_accepted(deployment: Deployment) -> None:
    stub = deployment.stub()
    request = results_pb2.GetResultRequest(transaction_id="txn-any")
    for metadata in (
        (),
        (("authorization", f"Bearer {deployment.bank.publishable_key}"),),
        (("authorization", "Bearer rsd_sk_" + "x" * 43),),
    ):
        assert await _code_of(stub.GetResult(request, metadata=metadata)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )


async def test_a_pending_transaction_says_where_it_stands(deployment: Deployment) -> None:
    bank, stub = deployment.bank, deployment.stub()
    request = results_pb2.GetResultRequest(transaction_id="txn-wait")
    await deployment.pending.mark(bank.organization_id, "txn-wait", PendingStatus.BUFFERED)
    reply = await stub.GetResult(request, metadata=bank.auth())
    assert (reply.status, reply.HasField("result")) == (results_pb2.RESULT_STATUS_BUFFERED, False)
    await deployment.pending.mark(bank.organization_id, "txn-wait", PendingStatus.SCORING)
    reply = await stub.GetResult(request, metadata=bank.auth())
    assert reply.status == results_pb2.RESULT_STATUS_SCORING
    await deployment.store.save(_result(bank, "txn-wait"))
    reply = await stub.GetResult(request, metadata=bank.auth())
    assert reply.status == results_pb2.RESULT_STATUS_SCORED
    assert reply.result.transaction_id == "txn-wait"
    # A status older than the maximum age no longer counts.
    stale = PostgresPendingTransactions(deployment.pool, max_age=timedelta(0))
    assert await stale.status(bank.organization_id, "txn-wait") is None


async def test_list_results_pages_newest_first_with_filters(deployment: Deployment) -> None:
    bank, stub = deployment.bank, deployment.stub()
    risks = [
        scoring_pb2.RISK_LEVEL_LOW,
        scoring_pb2.RISK_LEVEL_HIGH,
        scoring_pb2.RISK_LEVEL_CRITICAL,
    ]
    for i in range(9):
        await deployment.store.save(
            _result(bank, f"txn-l{i}", risk=risks[i % 3], scored_at=T0 + timedelta(minutes=i))
        )
    await deployment.store.save(_result(deployment.other, "txn-l-other", scored_at=T0))

    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListResults(
            results_pb2.ListResultsRequest(page_size=4, page_token=token), metadata=bank.auth()
        )
        seen += [r.transaction_id for r in page.results]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"txn-l{i}" for i in reversed(range(9))]

    request = results_pb2.ListResultsRequest(
        page_size=2,
        risk_levels=[scoring_pb2.RISK_LEVEL_HIGH, scoring_pb2.RISK_LEVEL_CRITICAL],
    )
    request.start_time.FromDatetime(T0 + timedelta(minutes=2))
    request.end_time.FromDatetime(T0 + timedelta(minutes=8))
    first = await stub.ListResults(request, metadata=bank.auth())
    assert [r.transaction_id for r in first.results] == ["txn-l7", "txn-l5"]
    request.page_token = first.next_page_token
    second = await stub.ListResults(request, metadata=bank.auth())
    assert [r.transaction_id for r in second.results] == ["txn-l4", "txn-l2"]
    assert second.next_page_token == ""

    # A token is bound to its filters; a garbled one is refused the same way.
    for token in (first.next_page_token, "not-a-token"):
        bad = await _code_of(
            stub.ListResults(
                results_pb2.ListResultsRequest(page_size=2, page_token=token),
                metadata=bank.auth(),
            )
        )
        assert bad == grpc.StatusCode.INVALID_ARGUMENT
    unspecified = await _code_of(
        stub.ListResults(
            results_pb2.ListResultsRequest(risk_levels=[scoring_pb2.RISK_LEVEL_UNSPECIFIED]),
            metadata=bank.auth(),
        )
    )
    assert unspecified == grpc.StatusCode.INVALID_ARGUMENT
    backwards = results_pb2.ListResultsRequest()
    backwards.start_time.FromDatetime(T0)
    backwards.end_time.FromDatetime(T0)
    assert await _code_of(stub.ListResults(backwards, metadata=bank.auth())) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_list_results_caps_the_page_size(deployment: Deployment) -> None:
    bank = deployment.bank
    org = uuid.UUID(bank.organization_id)
    # Bulk rows straight into the tables: this test is about reading, not saving.
    await deployment.pool.executemany(
        "INSERT INTO results (organization_id, transaction_id, segment, cursor, session_id, "
        "bot_detection, keystroke_dynamics, location_anomaly, device_fingerprint, "
        "behavioral_anomaly, overall_confidence, risk_level, model_version, processing_time_ms) "
        "VALUES ($1, $2, 0, $3, 's', 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 'LOW', 'm:1', 1)",
        [(org, f"txn-c{i}", i + 1) for i in range(505)],
    )
    await deployment.pool.execute("INSERT INTO result_cursors VALUES ($1, 505)", org)
    stub = deployment.stub()
    capped = await stub.ListResults(
        results_pb2.ListResultsRequest(page_size=10_000), metadata=bank.auth()
    )
    assert len(capped.results) == 500
    assert capped.next_page_token
    default = await stub.ListResults(results_pb2.ListResultsRequest(), metadata=bank.auth())
    assert len(default.results) == 50


async def _collect(
    stream: AsyncIterable[results_pb2.WatchResultsResponse], count: int, seconds: float = 10
) -> list[scoring_pb2.TransactionResult]:
    got: list[scoring_pb2.TransactionResult] = []
    async with asyncio.timeout(seconds):
        async for item in stream:
            got.append(item.result)
            if len(got) == count:
                break
    return got


async def test_watch_resumes_from_a_cursor_and_follows_live(deployment: Deployment) -> None:
    bank, other, store = deployment.bank, deployment.other, deployment.store
    for i in range(7):  # more than one read of watch_batch_size
        await store.save(_result(bank, f"txn-w{i}"))
        await store.save(_result(other, f"txn-w{i}-other"))
    first = await store.get(bank.organization_id, "txn-w0", 0)
    assert first is not None

    call = deployment.stub().WatchResults(
        results_pb2.WatchResultsRequest(after_cursor=first.cursor), metadata=bank.auth()
    )
    missed = await _collect(call, 6)
    assert [r.transaction_id for r in missed] == [f"txn-w{i}" for i in range(1, 7)]
    # Each organization's cursors count 1, 2, 3...: they reveal nothing about the others.
    assert first.cursor == 1
    cursors = [r.cursor for r in missed]
    assert cursors == list(range(2, 8))

    # New results arrive through LISTEN/NOTIFY (the poll interval is 60 s), concurrent
    # writers included, in cursor order and only the caller's organization's.
    async def write(tenant: Tenant, prefix: str) -> None:
        await asyncio.gather(*(store.save(_result(tenant, f"{prefix}{i}")) for i in range(10)))

    await asyncio.gather(write(other, "txn-live-other-"), write(bank, "txn-live-"))
    live = await _collect(call, 10, seconds=5)
    assert sorted(r.transaction_id for r in live) == sorted(f"txn-live-{i}" for i in range(10))
    assert {r.organization_id for r in live} == {bank.organization_id}
    live_cursors = [r.cursor for r in live]
    assert live_cursors == list(range(8, 18))
    call.cancel()

    # A reconnect from the last cursor seen misses nothing and repeats nothing.
    await store.save(_result(bank, "txn-after-reconnect"))
    again = deployment.stub().WatchResults(
        results_pb2.WatchResultsRequest(after_cursor=live_cursors[-1]), metadata=bank.auth()
    )
    (resumed,) = await _collect(again, 1)
    assert resumed.transaction_id == "txn-after-reconnect"
    again.cancel()


async def test_watch_starts_now_or_from_the_beginning(deployment: Deployment) -> None:
    bank, store = deployment.bank, deployment.store
    await store.save(_result(bank, "txn-old"))
    stub = deployment.stub()
    from_now = stub.WatchResults(results_pb2.WatchResultsRequest(), metadata=bank.auth())
    everything = stub.WatchResults(
        results_pb2.WatchResultsRequest(from_beginning=True), metadata=bank.auth()
    )
    (old,) = await _collect(everything, 1)
    assert old.transaction_id == "txn-old"
    # Give the from-now stream time to take its starting point before storing.
    await asyncio.sleep(1)
    await store.save(_result(bank, "txn-new"))
    (new,) = await _collect(from_now, 1)
    assert new.transaction_id == "txn-new"
    (also_new,) = await _collect(everything, 1)
    assert also_new.transaction_id == "txn-new"
    from_now.cancel()
    everything.cancel()


async def test_shutdown_ends_open_streams_cleanly(deployment: Deployment) -> None:
    call = deployment.stub().WatchResults(
        results_pb2.WatchResultsRequest(from_beginning=True), metadata=deployment.bank.auth()
    )
    await asyncio.sleep(0.5)  # the stream is open and waiting
    started = asyncio.get_running_loop().time()
    await deployment.server.shutdown()
    async with asyncio.timeout(5):
        async for _ in call:
            pass
    assert await call.code() == grpc.StatusCode.OK
    # Ended by the service, not by the 5 s grace period running out.
    assert asyncio.get_running_loop().time() - started < 3


async def test_watch_survives_a_lost_listen_connection(
    deployment: Deployment, admin_dsn: str, module_database: str
) -> None:
    bank = deployment.bank
    call = deployment.stub().WatchResults(
        results_pb2.WatchResultsRequest(from_beginning=True), metadata=bank.auth()
    )
    await asyncio.sleep(0.5)  # the stream is open and waiting
    admin = await asyncpg.connect(admin_dsn)
    try:
        terminated = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity s, pg_terminate_backend(s.pid) "
            "WHERE s.datname = $1 AND s.application_name = $2",
            module_database.rsplit("/", 1)[-1],
            LISTENER_APPLICATION_NAME,
        )
    finally:
        await admin.close()
    assert terminated == 1
    # Stored while nobody listens: its NOTIFY is lost; the reconnection wakes the stream.
    await deployment.store.save(_result(bank, "txn-while-deaf"))
    (got,) = await _collect(call, 1, seconds=8)
    assert got.transaction_id == "txn-while-deaf"
    call.cancel()
