"""Scoring one poll's compiled transactions: one model request, rules, store, then announce.

Every step is idempotent, so a batch that failed half-way (a store or the model away) is
simply scored again: a segment already stored is not scored twice, only re-announced (its
notification may not have gone out), and a user's profile is updated only by the call that
stored the result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter

from rased.scoring.evidence import Evidence, gather_evidence
from rased.scoring.profile import UserProfile, updated_profile
from rased.scoring.rules import RULES_VERSION, Assessment, assess
from rased.services.results.ports import PendingStatus
from rased.services.scoring.breaker import CircuitBreaker
from rased.services.scoring.ports import (
    BotPrediction,
    ModelClient,
    ModelUnavailable,
    PendingMarker,
    ProfileStore,
    ResultNotifier,
    ResultSink,
)
from rased.v1 import pipeline_pb2, scoring_pb2

logger = logging.getLogger(__name__)

SCORED = Counter(
    "rased_scoring_results_total", "Results handled by the scoring worker, by outcome.", ["outcome"]
)
MODEL_CALLS = Counter(
    "rased_scoring_model_calls_total",
    "Model requests, by backend and outcome.",
    ["backend", "outcome"],
)


@dataclass(frozen=True)
class BatchOutcome:
    """What scoring one batch did."""

    stored: int
    redelivered: int
    degraded: bool


class Scorer:
    """Scores compiled transactions in batches (see the module docstring)."""

    def __init__(
        self,
        model: ModelClient,
        breaker: CircuitBreaker,
        profiles: ProfileStore,
        results: ResultSink,
        pending: PendingMarker,
        notifier: ResultNotifier,
        fallback: ModelClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`fallback`, when given, answers while the model server is unavailable (degraded)."""
        self._model = model
        self.breaker = breaker
        self._profiles = profiles
        self._results = results
        self._pending = pending
        self._notifier = notifier
        self._fallback = fallback
        self._clock = clock

    async def score(
        self, batch: Sequence[pipeline_pb2.CompiledTransaction], received_at: float
    ) -> BatchOutcome:
        """Score, store and announce every transaction of the batch.

        `received_at` is the clock's time when the batch was taken from Kafka (the processing
        time counts from there).

        Raises:
            ModelUnavailable: the model server is away and no fallback is configured.
            DependencyUnavailable: PostgreSQL, Redis or Kafka is away.
        """
        stored = await self._results.get_many(
            [(c.organization_id, c.transaction_id, c.segment) for c in batch]
        )
        fresh = [c for c, result in zip(batch, stored, strict=True) if result is None]
        announced = [result for result in stored if result is not None]
        degraded = False
        new_count = 0
        if fresh:
            await self._pending.mark_many(
                [(c.organization_id, c.transaction_id) for c in fresh], PendingStatus.SCORING
            )
            evidence = [gather_evidence(c) for c in fresh]
            keys = [(c.organization_id, c.user_id) for c in fresh if c.user_id]
            loaded = dict(zip(keys, await self._profiles.load(keys), strict=True))
            profiles = [loaded.get((c.organization_id, c.user_id)) or UserProfile() for c in fresh]
            prediction, degraded = await self._predict(evidence)
            results = [
                self._result(c, assess(e, p, float(prob)), prediction, degraded, received_at)
                for c, e, p, prob in zip(
                    fresh, evidence, profiles, prediction.probabilities, strict=True
                )
            ]
            saved = await self._results.save_many(results)
            new_count = sum(row is not None for row in saved)
            await self._update_profiles(
                [(c, e) for c, e, row in zip(fresh, evidence, saved, strict=True) if row], loaded
            )
            # Announce the rows as stored: with their cursor (assigned by the store), and a
            # row another worker stored meanwhile as that worker stored it.
            others = [r for r, row in zip(results, saved, strict=True) if row is None]
            announced.extend(row for row in saved if row is not None)
            if others:
                rows = await self._results.get_many(
                    [(r.organization_id, r.transaction_id, r.segment) for r in others]
                )
                announced.extend(row for row in rows if row is not None)
        await asyncio.gather(*(self._notifier.notify(result) for result in announced))
        SCORED.labels("degraded" if degraded else "stored").inc(new_count)
        SCORED.labels("redelivered").inc(len(batch) - len(fresh))
        return BatchOutcome(new_count, len(batch) - len(fresh), degraded)

    async def _predict(self, evidence: Sequence[Evidence]) -> tuple[BotPrediction, bool]:
        """Return P(bot) per row from the model server, or the fallback while it is away."""
        rows = np.stack([e.pointer_features for e in evidence]).astype(np.float32)
        if self.breaker.allow():
            try:
                prediction = await self._model.bot_probabilities(rows)
            except ModelUnavailable as exc:
                self.breaker.record_failure()
                MODEL_CALLS.labels("triton", "failed").inc()
                logger.warning("model server unavailable (%s); breaker %s", exc, self.breaker.state)
            else:
                self.breaker.record_success()
                MODEL_CALLS.labels("triton", "ok").inc()
                return prediction, False
        if self._fallback is None:
            raise ModelUnavailable(f"model server unavailable (breaker {self.breaker.state})")
        MODEL_CALLS.labels("in_process", "ok").inc()
        return await self._fallback.bot_probabilities(rows), True

    def _result(
        self,
        compiled: pipeline_pb2.CompiledTransaction,
        assessment: Assessment,
        prediction: BotPrediction,
        degraded: bool,
        received_at: float,
    ) -> scoring_pb2.TransactionResult:
        scores = assessment.scores
        result = scoring_pb2.TransactionResult(
            organization_id=compiled.organization_id,
            session_id=compiled.session_id,
            transaction_id=compiled.transaction_id,
            segment=compiled.segment,
            user_id=compiled.user_id,
            scores=scoring_pb2.Scores(
                bot_detection=scores["bot_detection"],
                keystroke_dynamics=scores["keystroke_dynamics"],
                location_anomaly=scores["location_anomaly"],
                device_fingerprint=scores["device_fingerprint"],
                behavioral_anomaly=scores["behavioral_anomaly"],
                overall_confidence=scores["overall_confidence"],
            ),
            risk_level=assessment.risk_level,
            recommendations=assessment.recommendations,
            reason_codes=[
                scoring_pb2.ReasonCode(
                    code=reason.code,
                    description=reason.description,
                    score=reason.score,
                    weight=weight,
                )
                for reason, weight in assessment.reasons
            ],
            model_version=f"{prediction.model_version}+{RULES_VERSION}",
            processing_time_ms=max(0, round((self._clock() - received_at) * 1000)),
            degraded=degraded,
        )
        result.scored_at.GetCurrentTime()
        return result

    async def _update_profiles(
        self,
        scored: Sequence[tuple[pipeline_pb2.CompiledTransaction, Evidence]],
        loaded: dict[tuple[str, str], UserProfile | None],
    ) -> None:
        """Fold each newly stored transaction into its user's profile, in batch order."""
        updated: dict[tuple[str, str], UserProfile] = {}
        for compiled, evidence in scored:
            if not compiled.user_id:
                continue  # an anonymous session has no profile
            key = (compiled.organization_id, compiled.user_id)
            base = updated.get(key) or loaded.get(key) or UserProfile()
            updated[key] = updated_profile(base, evidence)
        await asyncio.gather(
            *(self._profiles.save(org, user, profile) for (org, user), profile in updated.items())
        )
