"""The Redis buffer's key layout: one hash tag per transaction, unambiguous, sharded indexes."""

from __future__ import annotations

import re

import pytest
import redis.asyncio as aioredis

from rased.adapters.redis.event_buffer import RedisEventBuffer
from rased.services.ingestion.buffer_store import TransactionKey
from rased.services.ingestion.ports import BufferPolicy

ORG = "5f0c6c1e-3a57-4d53-9a55-0d5f3b1c2a10"


def _buffer(prefix: str = "rased:", shards: int = 16) -> RedisEventBuffer:
    # Never connects: building keys needs no server.
    return RedisEventBuffer(aioredis.Redis(), BufferPolicy(deadline_shards=shards), prefix)


def _hash_tag(key: str) -> str:
    match = re.search(r"\{([^}]*)\}", key)
    assert match is not None, key
    return match.group(1)


def test_every_key_of_a_transaction_shares_its_hash_tag() -> None:
    """All six keys a script touches land in one cluster slot, and only this transaction's."""
    keys = _buffer().transaction_keys(TransactionKey(ORG, "sess:9", "txn-7"))
    assert keys[0] == f"rased:events:{{{ORG}/sess:9/txn-7}}"
    assert {_hash_tag(key) for key in keys} == {f"{ORG}/sess:9/txn-7"}
    assert len(set(keys)) == 6


def test_ids_with_colons_cannot_collide() -> None:
    """Colons are allowed in ids, so they cannot separate them: ("a:b", "c") != ("a", "b:c")."""
    buffer = _buffer()
    one = buffer.transaction_keys(TransactionKey(ORG, "a:b", "c"))
    other = buffer.transaction_keys(TransactionKey(ORG, "a", "b:c"))
    assert one[0] != other[0]
    assert TransactionKey.from_tag(_hash_tag(one[0])) == TransactionKey(ORG, "a:b", "c")


@pytest.mark.parametrize(
    "transaction",
    [
        TransactionKey(ORG, "sess/1", "txn"),
        TransactionKey(ORG, "sess", "txn{1}"),
        TransactionKey(ORG, "", "txn"),
        TransactionKey("", "sess", "txn"),
        TransactionKey(ORG, "sess", ""),
    ],
)
def test_ids_that_would_break_the_tag_are_refused(transaction: TransactionKey) -> None:
    """Separators, braces and empty ids never reach Redis."""
    with pytest.raises(ValueError, match="ids must be"):
        _buffer().transaction_keys(transaction)


def test_indexes_are_sharded_into_separate_slots() -> None:
    """Each shard has its own hash tag; a transaction always maps to the same shard."""
    buffer = _buffer(shards=8)
    assert {_hash_tag(buffer.deadline_index(s)) for s in range(8)} == {str(s) for s in range(8)}
    assert buffer.flush_index(3) == "rased:flushes:{3}"
    transactions = [TransactionKey(ORG, "s", f"txn-{n}") for n in range(400)]
    shards = [buffer.shard_of(t) for t in transactions]
    assert shards == [buffer.shard_of(t) for t in transactions]
    assert set(shards) == set(range(8))  # spread over all of them


def test_a_prefix_with_braces_is_refused() -> None:
    """A brace in the prefix would become the hash tag of every key."""
    with pytest.raises(ValueError, match="key_prefix"):
        _buffer(prefix="{tenant}:")
