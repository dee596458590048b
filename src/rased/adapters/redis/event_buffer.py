"""Per-transaction event buffers in Redis: idempotent appends, atomic moves, sharded indexes.

Key layout (``P`` is the key prefix, ``T`` the transaction's tag ``<org>/<session>/<txn>``;
ids never contain ``/`` or braces, so a tag is unambiguous and is the hash tag of every key
a script touches, one cluster slot per transaction):

- ``P events:{T}``           string: the buffered batches, each framed by the caller
- ``P events:{T}:state``     hash: batches, bytes, events, event time range, user, last append
- ``P events:{T}:ids``       set: batch ids stored (dedup; expires ``dedup_ttl`` after the
                             last append)
- ``P events:{T}:txn``       hash: next segment number, last flush (same expiry)
- ``P events:{T}:pending``   hash: segment -> meta of a segment being published, and the
                             flush token -> segment (makes a retried move idempotent)
- ``P events:{T}:flushing``  hash: segment -> payload of a segment being published
- ``P deadlines:{N}``        sorted set, N < deadline_shards: member ``T``, score the idle
                             deadline in ms (or a sweeper's lease while it is claimed)
- ``P flushes:{N}``          sorted set, N < deadline_shards: member ``T/<token>``, score
                             the time of the move in ms (or a recoverer's lease)

An index and a transaction live in different slots, so no script touches both; the order
of the separate commands makes every crash recoverable (each method's docstring says how).
Scripts are sent as EVALSHA in pipelines of one round trip, shared by concurrent requests
(`PipelineCoalescer`). On Redis Cluster, a pipeline
whose commands span slots goes to several nodes at once; there the index write must be
awaited before the script it guards (one more round trip), which this class does not do yet.
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Sequence
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from rased.adapters.redis.lua_scripts import lua_source
from rased.adapters.redis.pipelining import Build, PipelineCoalescer
from rased.services.ingestion.buffer_store import (
    AppendResult,
    MoveResult,
    MoveStatus,
    Segment,
    TransactionKey,
)
from rased.services.ingestion.ports import BufferPolicy
from rased.v1 import ingest_pb2

# Characters that would break a tag: the separator and the hash-tag braces.
_FORBIDDEN = ("/", "{", "}")
# How many index members one claim takes; the sweeper loops while a shard has more.
CLAIM_LIMIT = 256
_COUNT = int(ingest_pb2.FLUSH_REASON_BATCH_COUNT)
_SIZE = int(ingest_pb2.FLUSH_REASON_SIZE)
_IDLE = int(ingest_pb2.FLUSH_REASON_IDLE)


def new_flush_token() -> str:
    """A fresh token naming one flush attempt (its flush index entry, its idempotency)."""
    return secrets.token_hex(8)


def _check_ids(transaction: TransactionKey) -> str:
    """Return the transaction's tag; refuse ids that would make it ambiguous or split it."""
    tag = transaction.tag
    if (
        tag.count("/") != 2
        or "{" in tag
        or "}" in tag
        or not (transaction.organization_id and transaction.session_id)
        or not transaction.transaction_id
    ):
        raise ValueError(f"ids must be non-empty without '/', '{{' or '}}': {tag!r}")
    return tag


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_segment(transaction: TransactionKey, meta: Any, payload: Any) -> Segment:
    fields = _text(meta).split(",", 10)
    return Segment(
        transaction=transaction,
        segment=int(fields[0]),
        reason=int(fields[1]),
        triggered_at_ms=int(fields[2]),
        moved_at_ms=int(fields[3]),
        batch_count=int(fields[4]),
        byte_count=int(fields[5]),
        event_count=int(fields[6]),
        first_event_ms=int(fields[7]),
        last_event_ms=int(fields[8]),
        token=fields[9],
        user_id=fields[10],
        payload=bytes(payload),
    )


class RedisEventBuffer:
    """Buffers framed batches per transaction in Redis and moves them out for publishing.

    The client must return bytes (``decode_responses=False``): payloads are binary.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        policy: BufferPolicy,
        key_prefix: str = "rased:",
    ) -> None:
        if any(char in key_prefix for char in _FORBIDDEN):
            raise ValueError(f"key_prefix must not contain '/', '{{' or '}}': {key_prefix!r}")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the Redis client must return bytes (decode_responses=False)")
        if policy.deadline_shards < 1:
            raise ValueError("deadline_shards must be at least 1")
        self._client = client
        self._policy = policy
        self._prefix = key_prefix
        self._shards = policy.deadline_shards
        self._dedup_ttl_ms = str(int(policy.dedup_ttl.total_seconds() * 1000))
        self._idle_ms = int(policy.idle_timeout.total_seconds() * 1000)
        common = lua_source("common.lua")
        self._append = client.register_script(common + lua_source("append.lua"))
        self._move = client.register_script(common + lua_source("move.lua"))
        self._stale = client.register_script(lua_source("stale.lua"))
        self._claim = client.register_script(lua_source("claim.lua"))
        self._settle = client.register_script(lua_source("settle.lua"))
        self._scripts = (self._append, self._move, self._stale, self._claim, self._settle)
        self._pipelines = PipelineCoalescer(client, self._load_scripts)

    # -- keys ----------------------------------------------------------------------------

    @property
    def shards(self) -> int:
        """How many deadline (and flush) index shards there are."""
        return self._shards

    def shard_of(self, transaction: TransactionKey) -> int:
        """The index shard of a transaction (stable: every process computes the same)."""
        return zlib.crc32(transaction.tag.encode()) % self._shards

    def deadline_index(self, shard: int) -> str:
        """Key of one shard of the idle-deadline index."""
        return f"{self._prefix}deadlines:{{{shard}}}"

    def flush_index(self, shard: int) -> str:
        """Key of one shard of the index of flushes in progress."""
        return f"{self._prefix}flushes:{{{shard}}}"

    def transaction_keys(self, transaction: TransactionKey) -> list[str]:
        """The six keys of a transaction, in the order the scripts take them."""
        base = f"{self._prefix}events:{{{_check_ids(transaction)}}}"
        return [
            base,
            f"{base}:state",
            f"{base}:ids",
            f"{base}:txn",
            f"{base}:pending",
            f"{base}:flushing",
        ]

    # -- running scripts -----------------------------------------------------------------

    async def _execute(self, build: Build) -> list[Any]:
        """Send one group of commands (in a pipeline shared with concurrent requests).

        EVALSHA is sent directly (redis-py's pipelined Script objects would add a SCRIPT
        EXISTS round trip) and reloaded after NOSCRIPT. Every group sent here is safe to
        send twice: appends dedup on batch id, moves on their flush token, and index
        writes are idempotent; so is redis-py's own resend after a dropped connection.

        Raises:
            DependencyUnavailable: Redis is unreachable, loading, or out of memory.
        """
        return await self._pipelines.execute(build)

    async def _load_scripts(self) -> None:
        for script in self._scripts:
            script.sha = await self._client.script_load(script.script)

    async def _run(self, script: AsyncScript, keys: Sequence[str], *args: Any) -> Any:
        """Run one script on its own (one round trip)."""
        results = await self._execute(lambda pipe: self._evalsha(pipe, script, keys, *args))
        return results[0]

    @staticmethod
    def _zrem(pipe: Pipeline, index: str, member: str) -> None:
        pipe.zrem(index, member)

    @staticmethod
    def _hdel(pipe: Pipeline, pending: str, meta_fields: list[str]) -> None:
        pipe.hdel(pending, meta_fields[0], f"t:{meta_fields[9]}")

    @staticmethod
    def _evalsha(pipe: Pipeline, script: AsyncScript, keys: Sequence[str], *args: Any) -> None:
        pipe.evalsha(script.sha, len(keys), *keys, *args)

    # -- appending -----------------------------------------------------------------------

    async def append(
        self,
        transaction: TransactionKey,
        batch_id: str,
        framed: bytes,
        size: int,
        event_count: int,
        first_event_ms: int | None,
        last_event_ms: int | None,
        user_id: str,
        now_ms: int,
        flush_reason: int | None = None,
    ) -> AppendResult:
        """Store one batch once per batch id, in one round trip; with a flush_reason, also
        move the buffer to flushing in the same atomic step.

        Crash windows: the idle deadline is written before the append (a deadline without
        a batch is dropped by the sweeper); with a flush, the flush index entry is written
        before the script that moves (an entry without a pending segment is dropped by
        recovery), so a segment moved to flushing is always reachable from an index.
        """
        keys = self.transaction_keys(transaction)
        shard = self.shard_of(transaction)
        token = new_flush_token() if flush_reason is not None else ""
        member = f"{transaction.tag}/{token}"

        def build(pipe: Pipeline) -> None:
            if flush_reason is None:
                pipe.zadd(self.deadline_index(shard), {transaction.tag: now_ms + self._idle_ms})
            else:
                pipe.zadd(self.flush_index(shard), {member: now_ms})
            self._evalsha(
                pipe,
                self._append,
                keys,
                batch_id,
                framed,
                size,
                event_count,
                "" if first_event_ms is None else first_event_ms,
                "" if last_event_ms is None else last_event_ms,
                user_id,
                now_ms,
                self._dedup_ttl_ms,
                token,
                0 if flush_reason is None else flush_reason,
            )

        reply = (await self._execute(build))[-1]
        status = int(reply[0])
        if status == 2:
            return AppendResult(
                duplicate=False, moved=_parse_segment(transaction, reply[1], reply[2])
            )
        if flush_reason is not None:
            # A duplicate moved nothing under this token: its index entry has no segment.
            await self._execute(lambda pipe: self._zrem(pipe, self.flush_index(shard), member))
        return AppendResult(duplicate=status == 0, batches=int(reply[1]), bytes=int(reply[2]))

    # -- moving to flushing --------------------------------------------------------------

    async def move_over_threshold(self, transaction: TransactionKey, now_ms: int) -> MoveResult:
        """Move the buffer if it still holds more than max_batches or at least max_bytes."""
        return (await self._move_many([transaction], "threshold", now_ms))[0]

    async def move_if_idle(
        self, transactions: Sequence[TransactionKey], now_ms: int
    ) -> list[MoveResult]:
        """Move the buffers whose latest batch is at least idle_timeout old (one round trip)."""
        return await self._move_many(transactions, "idle", now_ms)

    async def _move_many(
        self, transactions: Sequence[TransactionKey], mode: str, now_ms: int
    ) -> list[MoveResult]:
        """Move buffers; the flush index entry of each is written before its move."""
        if not transactions:
            return []
        policy = self._policy
        members = [(self.shard_of(t), f"{t.tag}/{new_flush_token()}") for t in transactions]

        def build(pipe: Pipeline) -> None:
            for transaction, (shard, member) in zip(transactions, members, strict=True):
                pipe.zadd(self.flush_index(shard), {member: now_ms})
                self._evalsha(
                    pipe,
                    self._move,
                    self.transaction_keys(transaction),
                    mode,
                    now_ms,
                    member.rsplit("/", 1)[1],
                    self._dedup_ttl_ms,
                    policy.max_batches,
                    policy.max_bytes,
                    _COUNT,
                    _SIZE,
                    self._idle_ms,
                    _IDLE,
                )

        replies = (await self._execute(build))[1::2]
        results: list[MoveResult] = []
        unused: list[tuple[int, str]] = []
        for transaction, reply, index_entry in zip(transactions, replies, members, strict=True):
            status = MoveStatus(int(reply[0]))
            if status is MoveStatus.MOVED:
                segment = _parse_segment(transaction, reply[1], reply[2])
                results.append(MoveResult(status, segment=segment))
                continue
            unused.append(index_entry)
            if status is MoveStatus.NOTHING:
                results.append(
                    MoveResult(status, last_segment=int(reply[1]), last_reason=int(reply[2]))
                )
            else:
                results.append(MoveResult(status, last_append_ms=int(reply[1])))
        if unused:
            # Their moves found nothing to move: the index entries point at no segment.
            def drop(pipe: Pipeline) -> None:
                for shard, member in unused:
                    pipe.zrem(self.flush_index(shard), member)

            await self._execute(drop)
        return results

    async def finish(self, segment: Segment) -> None:
        """Forget a published segment: payload first, then meta, then its index entry.

        That order leaves, after any crash, either a meta without payload (recovery drops
        it: published already) or an index entry without a segment (recovery drops it).
        """
        keys = self.transaction_keys(segment.transaction)
        shard = self.shard_of(segment.transaction)
        member = f"{segment.transaction.tag}/{segment.token}"

        def build(pipe: Pipeline) -> None:
            pipe.hdel(keys[5], str(segment.segment))
            pipe.hdel(keys[4], str(segment.segment), f"t:{segment.token}")
            pipe.zrem(self.flush_index(shard), member)

        await self._execute(build)

    # -- the idle-deadline index ---------------------------------------------------------

    async def claim_due(
        self, shard: int, now_ms: int, lease_ms: int, limit: int = CLAIM_LIMIT
    ) -> tuple[list[TransactionKey], int]:
        """Claim transactions whose idle deadline has passed; return them and the lease score.

        A claim re-scores the member to the lease instead of removing it: if this process
        dies before settling, the transaction is due again when the lease runs out.
        """
        lease = now_ms + lease_ms
        index = self.deadline_index(shard)
        members = await self._run(self._claim, [index], now_ms, lease, limit)
        return [TransactionKey.from_tag(_text(member)) for member in members], lease

    async def settle_deadlines(
        self, settled: Sequence[tuple[TransactionKey, int, int | None]]
    ) -> None:
        """For each (transaction, lease, new deadline or None to remove): apply it if the
        member still carries the lease (an append since then wrote a newer deadline)."""
        if not settled:
            return

        def build(pipe: Pipeline) -> None:
            for transaction, lease, deadline in settled:
                self._evalsha(
                    pipe,
                    self._settle,
                    [self.deadline_index(self.shard_of(transaction))],
                    transaction.tag,
                    lease,
                    "" if deadline is None else deadline,
                )

        await self._execute(build)

    # -- recovering interrupted flushes --------------------------------------------------

    async def claim_stale_flushes(
        self, shard: int, now_ms: int, stale_ms: int, limit: int = CLAIM_LIMIT
    ) -> list[str]:
        """Claim flush index entries older than stale_ms; they are due again stale_ms later."""
        index = self.flush_index(shard)
        members = await self._run(self._claim, [index], now_ms - stale_ms, now_ms, limit)
        return [_text(member) for member in members]

    async def stale_segments(self, member: str, moved_before_ms: int) -> list[Segment]:
        """The segments of the member's transaction moved at or before a time.

        A meta left without its payload belongs to a finish cut short: already published,
        so it is dropped here.
        """
        transaction = TransactionKey.from_tag(member.rsplit("/", 1)[0])
        keys = self.transaction_keys(transaction)
        reply = await self._run(self._stale, [keys[4], keys[5]], moved_before_ms)
        segments: list[Segment] = []
        for meta, payload in zip(reply[::2], reply[1::2], strict=True):
            if payload is None:
                fields = _text(meta).split(",", 10)
                await self._execute(partial(self._hdel, pending=keys[4], meta_fields=fields))
                continue
            segments.append(_parse_segment(transaction, meta, payload))
        return segments

    async def drop_flush_entry(self, member: str) -> None:
        """Remove a flush index entry whose segments are all published."""
        transaction = TransactionKey.from_tag(member.rsplit("/", 1)[0])
        index = self.flush_index(self.shard_of(transaction))
        await self._execute(lambda pipe: self._zrem(pipe, index, member))
