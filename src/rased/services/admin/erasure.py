"""Subject erasure (GDPR): erase a session, or every session of a user id, from every store.

What links a user to sessions: the user id a session token was minted for travels with the
session's batches, into the Redis buffer (its `:state` hash while buffered, a flushing
segment's meta until published) and into `results.user_id` once scored. Cassandra's rows
and webhook deliveries carry no user id, so a user's sessions are taken from those two and
remembered in the job before anything is deleted (a retry still knows them after the
results are gone). A session's transactions are the union of what Cassandra lists for it,
its Redis buffers, its results and its deliveries.

Order of one attempt: every store is asked for the sessions and transactions first, so a
store that is down fails the attempt before anything is deleted; then PostgreSQL (one
database transaction: deliveries and their attempts, results, pending statuses), the Redis
buffers and index entries, Cassandra (the session listing last), and the user's profile.
Every step deletes what is still there, so an attempt cut short is simply run again; counts
add up over attempts.

Not covered: Kafka messages still in flight (a transaction flushed moments before the
erasure may be stored after it; Kafka's retention bounds how long they exist); batches
ingested for the session after the job ran (erase again, or revoke the session first); and
a user's sessions that neither a result nor a Redis buffer links to the user any more
(persisted but never scored: Cassandra's rows carry no user id; erase those by session id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from rased.adapters.postgres.erasure import (
    ErasureJobRecord,
    ErasureJobStore,
    SubjectKind,
)
from rased.adapters.postgres.organizations import OrganizationDirectory
from rased.common.errors import NotFound, RasedError
from rased.services.admin.access import AccessControl
from rased.services.admin.administration import action, org_target, require_organization

logger = logging.getLogger(__name__)

JOB_NOT_FOUND = "erasure job not found"


class RelationalSubjectData(Protocol):
    """The subject's rows in the relational store (results, statuses, deliveries)."""

    async def sessions_of_user(self, organization_id: str, user_id: str) -> set[str]:
        """Return the sessions whose results carry the user id."""
        ...

    async def transactions(self, organization_id: str, sessions: Collection[str]) -> set[str]:
        """Return the sessions' transactions known to this store."""
        ...

    async def erase(
        self,
        organization_id: str,
        sessions: Collection[str],
        transactions: Collection[str],
        counts: Counter[str],
    ) -> None:
        """Delete the rows of the sessions and transactions; add what was deleted to counts."""
        ...


class EventSubjectData(Protocol):
    """The subject's events and their listings (the long-term event store)."""

    async def transactions(self, organization_id: str, sessions: Collection[str]) -> set[str]:
        """Return the sessions' transactions listed in this store."""
        ...

    async def erase(
        self,
        organization_id: str,
        sessions: Collection[str],
        transactions: Collection[str],
        counts: Counter[str],
    ) -> None:
        """Delete the events and listings of the sessions and transactions."""
        ...


class BufferSubjectData(Protocol):
    """The subject's buffered batches and profile (the in-memory store)."""

    async def sessions_of_user(self, organization_id: str, user_id: str) -> set[str]:
        """Return the sessions with a buffer appended for the user."""
        ...

    async def transactions(self, organization_id: str, sessions: Collection[str]) -> set[str]:
        """Return the sessions' buffered transactions."""
        ...

    async def erase(
        self, organization_id: str, sessions: Collection[str], counts: Counter[str]
    ) -> None:
        """Delete the sessions' buffers and index entries."""
        ...

    async def erase_profile(self, organization_id: str, user_id: str, counts: Counter[str]) -> None:
        """Delete the user's profile."""
        ...


class LostClaim(RasedError):
    """Another runner holds the job now (this one outlived its lease)."""


class SubjectEraser:
    """Erases one job's subject from every store; safe to run again on the same job."""

    def __init__(
        self,
        jobs: ErasureJobStore,
        relational: RelationalSubjectData,
        events: EventSubjectData,
        buffers: BufferSubjectData,
    ) -> None:
        self._jobs = jobs
        self._relational = relational
        self._events = events
        self._buffers = buffers

    async def sessions(self, job: ErasureJobRecord) -> set[str]:
        """Return the job's sessions: remembered ones plus those found now."""
        org, subject = job.organization_id, job.subject_id
        if job.subject_kind is SubjectKind.SESSION:
            return {subject}
        found = set(job.sessions)
        found |= await self._relational.sessions_of_user(org, subject)
        found |= await self._buffers.sessions_of_user(org, subject)
        return found

    async def erase(self, job: ErasureJobRecord, counts: Counter[str]) -> None:
        """Erase everything of the job's subject; add what was deleted to `counts`."""
        org = job.organization_id
        sessions = await self.sessions(job)
        if set(sessions) - set(job.sessions) and not await self._jobs.remember_sessions(
            job, sessions
        ):
            raise LostClaim("the job was claimed by another runner")
        transactions = (
            await self._relational.transactions(org, sessions)
            | await self._buffers.transactions(org, sessions)
            | await self._events.transactions(org, sessions)
        )
        await self._relational.erase(org, sessions, transactions, counts)
        await self._buffers.erase(org, sessions, counts)
        await self._events.erase(org, sessions, transactions, counts)
        if job.subject_kind is SubjectKind.USER:
            await self._buffers.erase_profile(org, job.subject_id, counts)


@dataclass(frozen=True)
class RunnerPolicy:
    """How the runner polls, leases and retries."""

    poll_interval: timedelta = timedelta(seconds=5)
    lease: timedelta = timedelta(minutes=10)
    retry_initial: timedelta = timedelta(seconds=5)
    retry_max: timedelta = timedelta(minutes=10)

    def retry_in(self, attempts: int) -> timedelta:
        """Return the wait after the given number of failed attempts (doubling, jittered)."""
        base = self.retry_initial * (1 << min(max(attempts - 1, 0), 20))
        return min(base, self.retry_max) * random.uniform(0.8, 1.0)  # noqa: S311 - jitter


class ErasureRunner:
    """Claims due erasure jobs one at a time and runs them to SUCCEEDED or FAILED (retried)."""

    def __init__(
        self, jobs: ErasureJobStore, eraser: SubjectEraser, policy: RunnerPolicy | None = None
    ) -> None:
        self._jobs = jobs
        self._eraser = eraser
        self._policy = policy or RunnerPolicy()
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Look for due jobs now (a job was just created)."""
        self._wake.set()

    def request_stop(self) -> None:
        """Finish the job in hand, then return from `run`."""
        self._stopping = True
        self._wake.set()

    async def run_once(self) -> bool:
        """Run one due job, if there is one; return whether there was."""
        job = await self._jobs.claim(self._policy.lease)
        if job is None:
            return False
        counts: Counter[str] = Counter()
        try:
            await self._eraser.erase(job, counts)
        except Exception as exc:  # every failure is recorded and retried
            # The message of a RasedError is safe to show; anything else is named only.
            error = str(exc) if isinstance(exc, RasedError) else type(exc).__name__
            logger.warning(
                "erasure job %s failed (attempt %d): %s",
                job.job_id,
                job.attempts,
                error,
                exc_info=not isinstance(exc, RasedError),
            )
            await self._jobs.fail(job, counts, error, self._policy.retry_in(job.attempts))
            return True
        if await self._jobs.succeed(job, counts):
            logger.info("erasure job %s succeeded", job.job_id)
        return True

    async def run(self) -> None:
        """Run due jobs until asked to stop; a store that is down delays, never stops, it."""
        interval = self._policy.poll_interval.total_seconds()
        while not self._stopping:
            try:
                if await self.run_once():
                    continue
            except Exception:  # the job store was unreachable: try again later
                logger.warning("claiming erasure jobs failed", exc_info=True)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)


class Erasures:
    """EraseSubject and GetErasureJob, behind AccessControl."""

    def __init__(
        self,
        access: AccessControl,
        directory: OrganizationDirectory,
        jobs: ErasureJobStore,
        runner: ErasureRunner | None = None,
    ) -> None:
        self._access = access
        self._directory = directory
        self._jobs = jobs
        self._runner = runner

    async def request(
        self,
        authorization: str | None,
        organization_id: str,
        kind: SubjectKind,
        subject_id: str,
    ) -> ErasureJobRecord:
        """Create a pending job that erases the subject, and return it."""
        # The audit names the organization only: subject ids are personal data.
        await self._access.admit(
            authorization,
            action("EraseSubject"),
            organization_id=organization_id,
            target=org_target(organization_id, "erasures"),
        )
        await require_organization(self._directory, organization_id)
        job = await self._jobs.create(organization_id, kind, subject_id)
        logger.info("erasure job %s created (%s)", job.job_id, kind.value)
        if self._runner is not None:
            self._runner.wake()
        return job

    async def get(
        self, authorization: str | None, organization_id: str, job_id: str
    ) -> ErasureJobRecord:
        """Return the organization's job."""
        await self._access.admit(
            authorization,
            action("GetErasureJob"),
            organization_id=organization_id,
            target=org_target(organization_id, "erasures", job_id),
        )
        await require_organization(self._directory, organization_id)
        job = await self._jobs.get(organization_id, job_id)
        if job is None:
            raise NotFound(JOB_NOT_FOUND)
        return job
