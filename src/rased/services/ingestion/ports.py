"""What the ingestion servicer needs from authentication, decryption and buffering.

The servicer and the intake logic depend on these narrow interfaces; the composition root
(`rased.services.ingestion.main`) plugs in the implementations.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from rased.services.results.ports import PendingStatus
from rased.v1 import events_pb2, ingest_pb2, pipeline_pb2


class CredentialKind(enum.Enum):
    """How a caller proved who it is."""

    # A JWT minted by SessionService.CreateSession.
    SESSION_TOKEN = "session_token"  # noqa: S105 - names a kind of credential
    # A browser-safe key: ingest only.
    PUBLISHABLE_KEY = "publishable_key"
    # A server-side key: sessions, results, its own organization's administration.
    SECRET_KEY = "secret_key"  # noqa: S105 - names a kind of credential


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: always one organization, sometimes one session."""

    organization_id: str
    credential: CredentialKind
    key_id: str | None = None
    session_id: str | None = None  # set for session tokens: batches must match it
    user_id: str | None = None  # pseudonymous user bound to the session token


class Authenticator(Protocol):
    """Checks credentials from the `authorization` metadata."""

    async def authenticate_ingest(self, authorization: str | None, origin: str | None) -> Caller:
        """Accept a session token or a publishable key (with its allowed origins).

        Raises:
            Unauthenticated: anything else, expired, `alg: none`, wrong audience or issuer,
                unknown or revoked key, or a publishable key used from a disallowed origin.
        """
        ...

    async def authenticate_secret(self, authorization: str | None) -> Caller:
        """Accept only a secret API key (for minting sessions); raise Unauthenticated."""
        ...


class SessionTokenIssuer(Protocol):
    """Mints the short-lived session tokens the Web SDK sends."""

    def issue(
        self, organization_id: str, session_id: str, user_id: str | None, ttl: timedelta | None
    ) -> tuple[str, datetime]:
        """Return a signed token scoped to org + session, and when it expires."""
        ...


class BatchDecryptor(Protocol):
    """Opens JWE-encrypted batches with the organization's private key."""

    async def decrypt(self, organization_id: str, compact_jwe: str) -> bytes:
        """Return the plaintext (protobuf-JSON of an EventBatch).

        Raises:
            DecryptionFailed: wrong key, unknown `kid`, tampered or malformed token.
        """
        ...


@dataclass(frozen=True)
class BufferOutcome:
    """What buffering one batch did."""

    disposition: ingest_pb2.BatchDisposition.ValueType
    flush_reason: ingest_pb2.FlushReason.ValueType = ingest_pb2.FLUSH_REASON_UNSPECIFIED
    buffered_batches: int = 0
    buffered_bytes: int = 0
    segment: int = 0


class BatchBuffer(Protocol):
    """Buffers a transaction's batches and compiles it when a trigger fires."""

    async def accept(
        self, organization_id: str, user_id: str | None, batch: events_pb2.EventBatch
    ) -> BufferOutcome:
        """Buffer one valid batch (idempotent on batch_id); flush if a trigger fires."""
        ...


class RejectionSink(Protocol):
    """Where rejected batches and events go (the `rejected_events` topic)."""

    async def publish_rejected(self, rejected: pipeline_pb2.RejectedBatch) -> None:
        """Publish durably (acks=all) before returning."""
        ...


class TransactionStatusSink(Protocol):
    """Records that a transaction is buffered or being scored, so GetResult can say so."""

    async def mark(self, organization_id: str, transaction_id: str, status: PendingStatus) -> None:
        """Record the transaction's status (idempotent)."""
        ...


class RateLimiter(Protocol):
    """Counts batches per organization and per session."""

    async def hit(self, organization_id: str, session_id: str) -> None:
        """Count one batch; raise QuotaExceeded (with the wait) when a limit is reached."""
        ...


@dataclass(frozen=True)
class BufferPolicy:
    """When a transaction's buffer is flushed, and how the sweeper works."""

    max_batches: int = 300  # flush when the buffer holds more than this many batches
    max_bytes: int = 3 * 1024 * 1024  # flush at this size: stays under Kafka's 4 MiB
    idle_timeout: timedelta = timedelta(minutes=5)
    deadline_shards: int = 16  # sorted sets holding idle deadlines, swept independently
    sweep_interval: timedelta = timedelta(seconds=1)
    stale_flush_after: timedelta = timedelta(seconds=30)  # re-publish flushes older than this
    dedup_ttl: timedelta = timedelta(hours=24)  # how long a batch id is remembered
