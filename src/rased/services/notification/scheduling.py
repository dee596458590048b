"""The delivery scheduler: claims due deliveries, sends one attempt each, records the outcome.

Deliveries and their next attempt times live in PostgreSQL, so a restarted worker (or any
other worker of the deployment) continues every schedule. A claim moves the next attempt
past a lease under SKIP LOCKED, so two workers never make the same attempt; a worker that
dies mid-attempt leaves the delivery to be claimed again once the lease ran out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from rased.adapters.postgres.webhook_deliveries import (
    AttemptOutcome,
    ClaimedDelivery,
    DeliveryStatus,
    WebhookDeliveryStore,
)
from rased.adapters.postgres.webhooks import WebhookEndpointStore
from rased.common.backoff import Backoff
from rased.common.errors import DependencyUnavailable
from rased.services.notification import signing
from rased.services.notification.sender import Answer, WebhookSender

logger = logging.getLogger(__name__)

ATTEMPTS = Counter(
    "rased_notification_attempts_total", "Webhook attempts made, by outcome.", ["outcome"]
)

GONE_REASON = "410 Gone"


class RetrySchedule:
    """Waits before each attempt of a round, jittered; Retry-After can only lengthen them."""

    def __init__(
        self,
        waits: Sequence[timedelta],
        jitter: float,
        retry_after_max: timedelta,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._waits = [w.total_seconds() for w in waits]
        self._jitter = jitter
        self._retry_after_max = retry_after_max.total_seconds()
        self._random = rand

    @property
    def attempts(self) -> int:
        """Return how many attempts a round makes before dead-lettering."""
        return len(self._waits)

    def first_wait(self) -> timedelta:
        """Return the wait before a new delivery's first attempt."""
        return timedelta(seconds=self._jittered(self._waits[0]))

    def next_wait(self, attempts_made: int, retry_after_s: float | None) -> float | None:
        """Return seconds until the next attempt, or None when the round is over."""
        if attempts_made >= len(self._waits):
            return None
        wait = self._jittered(self._waits[attempts_made])
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self._retry_after_max))
        return wait

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 - self._jitter + 2 * self._jitter * self._random())


class DeliveryScheduler:
    """Runs rounds of claim, send and record until stopped."""

    def __init__(
        self,
        deliveries: WebhookDeliveryStore,
        endpoints: WebhookEndpointStore,
        sender: WebhookSender,
        schedule: RetrySchedule,
        *,
        lease: timedelta,
        batch: int,
        poll_interval: timedelta,
        backoff: Backoff,
    ) -> None:
        self._deliveries = deliveries
        self._endpoints = endpoints
        self._sender = sender
        self._schedule = schedule
        self._lease = lease
        self._batch = batch
        self._poll_interval_s = poll_interval.total_seconds()
        self._backoff = backoff
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due deliveries now (new ones were just created)."""
        self._wake.set()

    def request_stop(self) -> None:
        """Stop after the attempts in flight are recorded."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        """Claim and send due deliveries until request_stop()."""
        failures = 0
        while not self._stop.is_set():
            try:
                sent = await self.run_once()
            except DependencyUnavailable as exc:
                logger.warning("claiming deliveries failed: %s", exc)
                await self._sleep(self._backoff.delay(failures))
                failures += 1
                continue
            failures = 0
            if sent < self._batch:
                await self._sleep(self._poll_interval_s)

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and make their attempts; return how many."""
        claimed = await self._deliveries.claim_due(self._batch, self._lease)
        if claimed:
            await asyncio.gather(*(self._attempt(c) for c in claimed))
        return len(claimed)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _attempt(self, claimed: ClaimedDelivery) -> None:
        try:
            await self._attempt_once(claimed)
        except Exception:
            # PostgreSQL failed around the attempt: the lease runs out and the delivery is
            # claimed again, so the attempt is made again rather than lost.
            logger.exception("attempt of delivery %s not recorded", claimed.delivery_id)

    async def _attempt_once(self, claimed: ClaimedDelivery) -> None:
        secrets = await self._endpoints.signing_secrets(
            claimed.organization_id, claimed.endpoint_id
        )
        now = datetime.now(UTC)
        if not secrets:
            outcome = AttemptOutcome(now, 0, error="endpoint deleted")
            await self._deliveries.record(claimed, outcome, DeliveryStatus.CANCELLED)
            return
        body = claimed.body.encode("utf-8")
        headers = signing.headers(secrets, claimed.delivery_id, int(now.timestamp()), body)
        answer = await self._sender.send(claimed.url, headers, body, claimed.allow_private_targets)
        await self._record(claimed, answer)

    async def _record(self, claimed: ClaimedDelivery, answer: Answer) -> None:
        outcome = AttemptOutcome(
            answer.attempted_at, answer.duration_ms, answer.status_code, answer.error
        )
        next_at: datetime | None = None
        disable = ""
        if answer.succeeded:
            status = DeliveryStatus.SUCCEEDED
        elif answer.status_code == 410:
            # The receiver says the endpoint is gone for good: stop sending it anything.
            status, disable = DeliveryStatus.CANCELLED, GONE_REASON
        else:
            wait = self._schedule.next_wait(claimed.round_attempt, answer.retry_after_s)
            if wait is None:
                status = DeliveryStatus.DEAD_LETTERED
            else:
                status = DeliveryStatus.PENDING
                next_at = datetime.now(UTC) + timedelta(seconds=wait)
        ATTEMPTS.labels(status.value).inc()
        recorded = await self._deliveries.record(claimed, outcome, status, next_at, disable)
        log = logger.info if answer.succeeded else logger.warning
        log(
            "delivery %s attempt %d: %s -> %s%s",
            claimed.delivery_id,
            claimed.attempt,
            answer.status_code or answer.error,
            status.value,
            "" if recorded else " (claim lost, not recorded)",
            extra={"organization_id": claimed.organization_id},
        )
