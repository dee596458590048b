"""The scoring worker's ports: the model, the profile store, the result sink and notifier."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from rased.scoring.profile import UserProfile
from rased.services.results.ports import PendingStatus
from rased.v1 import scoring_pb2


class ModelUnavailable(Exception):
    """The model server could not answer (down, timing out, or the circuit is open)."""


@dataclass(frozen=True)
class BotPrediction:
    """P(bot) per row of a request, and the version of the model that answered."""

    probabilities: NDArray[np.float64]
    model_version: str


@dataclass(frozen=True)
class SessionPrediction:
    """session_scores' answer per row of a request, and the version of the model.

    `scores` columns follow `rased.features.profile_comparison.OUTPUT_SCORES`;
    `contributions[i, k, j]` is feature j's additive share of anomaly score k's logit
    (k in `ANOMALY_SCORES` order) for row i.
    """

    scores: NDArray[np.float64]  # [n, 5]
    contributions: NDArray[np.float64]  # [n, 4, 40]
    model_version: str


class ModelClient(Protocol):
    """Runs the scoring models: bot_detection on pointer features, session_scores on the
    session-versus-profile features. Each call is one request for the whole batch."""

    async def bot_probabilities(self, features: NDArray[np.float32]) -> BotPrediction:
        """Return P(bot) for each row of `features` (shape [n, 34]), in one request.

        Raises:
            ModelUnavailable: no answer within the client's timeouts and retries.
        """
        ...

    async def session_scores(self, features: NDArray[np.float32]) -> SessionPrediction:
        """Return the session scores and contributions of each row (shape [n, 40]).

        Raises:
            ModelUnavailable: no answer within the client's timeouts and retries.
        """
        ...

    async def close(self) -> None:
        """Release connections; safe to call twice."""
        ...


class ProfileStore(Protocol):
    """The online feature store: one behavioural profile per (organization, user)."""

    async def load(self, keys: Sequence[tuple[str, str]]) -> list[UserProfile | None]:
        """Return the profile of each (organization, user), None for a user never seen.

        Raises:
            DependencyUnavailable: the store cannot be reached.
        """
        ...

    async def save(self, organization_id: str, user_id: str, profile: UserProfile) -> None:
        """Store (replace) a user's profile.

        Raises:
            DependencyUnavailable: the store cannot be reached.
        """
        ...


class ResultSink(Protocol):
    """Where scored results are stored (idempotent per organization, transaction, segment)."""

    async def save_many(
        self, results: Sequence[scoring_pb2.TransactionResult]
    ) -> list[scoring_pb2.TransactionResult | None]:
        """Store the results; return each stored row, None where the segment was stored
        already (a redelivery, which changes nothing)."""
        ...

    async def get_many(
        self, keys: Sequence[tuple[str, str, int]]
    ) -> list[scoring_pb2.TransactionResult | None]:
        """Return the stored result of each (organization, transaction, segment), or None."""
        ...


class PendingMarker(Protocol):
    """Records that transactions are being scored (GetResult answers "pending")."""

    async def mark_many(self, keys: Sequence[tuple[str, str]], status: PendingStatus) -> None:
        """Record the pending status of each (organization, transaction)."""
        ...


class ResultNotifier(Protocol):
    """Announces stored results on `client_notification`."""

    async def notify(self, result: scoring_pb2.TransactionResult) -> None:
        """Publish the result; return once the broker acknowledged it.

        Raises:
            DependencyUnavailable: the broker did not acknowledge it.
        """
        ...
