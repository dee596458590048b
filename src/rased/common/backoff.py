"""Exponential backoff with full jitter, for retrying while a dependency is unavailable."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Waits of `initial * 2**attempt`, capped at `maximum`, each drawn in [cap/2, cap].

    Half-jitter keeps many workers from retrying in lockstep once a node is back, while
    never waiting less than half the schedule (no hammering a struggling store).
    """

    initial_s: float
    maximum_s: float
    random: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempt: int) -> float:
        """Return the wait before retry number `attempt` (0 for the first retry)."""
        cap = min(self.maximum_s, self.initial_s * 2.0 ** min(attempt, 62))
        return cap / 2 + self.random() * cap / 2
