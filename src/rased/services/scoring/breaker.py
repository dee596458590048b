"""A circuit breaker around the model server: fail fast while it is down, probe it now and then."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls fail fast until the reset timeout has passed
    HALF_OPEN = "half_open"  # one probe call is let through


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_timeout_s` one probe
    call is allowed (half-open): its success closes the breaker, its failure opens it again."""

    def __init__(
        self,
        failure_threshold: int,
        reset_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._reset = reset_timeout_s
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._state = BreakerState.CLOSED

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN turns HALF_OPEN only when a call asks, in `allow`)."""
        return self._state

    def allow(self) -> bool:
        """Tell whether a call may go through now (and turn OPEN into HALF_OPEN when due)."""
        if self._state == BreakerState.OPEN and self._clock() - self._opened_at >= self._reset:
            self._state = BreakerState.HALF_OPEN
            return True
        return self._state == BreakerState.CLOSED

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        self._failures = 0
        self._state = BreakerState.CLOSED

    def record_failure(self) -> None:
        """A call failed: open the breaker at the threshold, or again after a failed probe."""
        self._failures += 1
        if self._state == BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
