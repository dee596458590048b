"""Scoring one poll's compiled transactions: one request per model, rules, store, announce.

Each poll's transactions are compared with their users' profiles
(`rased.features.profile_comparison`, the code training runs) and sent to both models at
once, one request each: bot_detection (pointer features) and session_scores (the
session-versus-profile features). `rased.scoring.rules` turns the answers into scores,
reasons, a risk level and recommendations.

Every step is idempotent, so a batch that failed half-way (a store or the model away) is
simply scored again: a segment already stored is not scored twice, only re-announced (its
notification may not have gone out), and a user's profile is updated only by the call that
stored the result. A session that does not look like the account's owner (HIGH or
CRITICAL from the comparison with the profile and the browser's automation flags) is not
folded into the profile: a takeover must not teach it the intruder's device, place and
rhythm. bot_detection's pointer model is left out of that decision: it judges automation,
not identity, and a false alarm of it would otherwise keep a person's profile from ever
forming.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from prometheus_client import Counter

from rased.features.profile_comparison import Observation, observe, session_features
from rased.features.trajectory import FloatArray
from rased.scoring.profile import UserProfile, updated_profile
from rased.scoring.rules import RULES_VERSION, Assessment, SessionScores, assess
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
    SessionPrediction,
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


# Sessions rated this high are not learnt by the profile (see the module docstring).
UNLEARNT_RISK = scoring_pb2.RISK_LEVEL_HIGH


@dataclass(frozen=True)
class Answers:
    """Both models' answers for one batch."""

    bot: BotPrediction
    sessions: SessionPrediction

    @property
    def model_version(self) -> str:
        """The models (and rules) that scored the batch, e.g. bot_detection:1+session_scores:1."""
        return f"{self.bot.model_version}+{self.sessions.model_version}+{RULES_VERSION}"


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
            seen = [observe(c) for c in fresh]
            keys = [(c.organization_id, c.user_id) for c in fresh if c.user_id]
            loaded = dict(zip(keys, await self._profiles.load(keys), strict=True))
            profiles = [loaded.get((c.organization_id, c.user_id)) or UserProfile() for c in fresh]
            features = [
                session_features(o.evidence, o.activity, p)
                for o, p in zip(seen, profiles, strict=True)
            ]
            answers, degraded = await self._predict(seen, features)
            assessments = [
                assess(
                    o.evidence,
                    p,
                    float(answers.bot.probabilities[i]),
                    SessionScores(
                        answers.sessions.scores[i], answers.sessions.contributions[i], features[i]
                    ),
                )
                for i, (o, p) in enumerate(zip(seen, profiles, strict=True))
            ]
            results = [
                self._result(c, a, answers, degraded, received_at)
                for c, a in zip(fresh, assessments, strict=True)
            ]
            saved = await self._results.save_many(results)
            new_count = sum(row is not None for row in saved)
            await self._update_profiles(
                [
                    (c, o)
                    for c, o, a, row in zip(fresh, seen, assessments, saved, strict=True)
                    if row is not None and a.identity_risk_level < UNLEARNT_RISK
                ],
                loaded,
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

    async def _predict(
        self, seen: Sequence[Observation], features: Sequence[FloatArray]
    ) -> tuple[Answers, bool]:
        """Return both models' answers from the model server, or the fallback while it is away.

        The two requests go out together; either failing counts as the server failing.
        """
        pointer = np.stack([o.evidence.bot_features for o in seen]).astype(np.float32)
        sessions = np.stack(features).astype(np.float32)
        if self.breaker.allow():
            try:
                answers = await _ask(self._model, pointer, sessions)
            except ModelUnavailable as exc:
                self.breaker.record_failure()
                MODEL_CALLS.labels("triton", "failed").inc()
                logger.warning("model server unavailable (%s); breaker %s", exc, self.breaker.state)
            else:
                self.breaker.record_success()
                MODEL_CALLS.labels("triton", "ok").inc()
                return answers, False
        if self._fallback is None:
            raise ModelUnavailable(f"model server unavailable (breaker {self.breaker.state})")
        MODEL_CALLS.labels("in_process", "ok").inc()
        return await _ask(self._fallback, pointer, sessions), True

    def _result(
        self,
        compiled: pipeline_pb2.CompiledTransaction,
        assessment: Assessment,
        answers: Answers,
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
            model_version=answers.model_version,
            processing_time_ms=max(0, round((self._clock() - received_at) * 1000)),
            degraded=degraded,
        )
        result.scored_at.GetCurrentTime()
        return result

    async def _update_profiles(
        self,
        scored: Sequence[tuple[pipeline_pb2.CompiledTransaction, Observation]],
        loaded: dict[tuple[str, str], UserProfile | None],
    ) -> None:
        """Fold each newly stored transaction into its user's profile, in batch order."""
        updated: dict[tuple[str, str], UserProfile] = {}
        for compiled, seen in scored:
            if not compiled.user_id:
                continue  # an anonymous session has no profile
            key = (compiled.organization_id, compiled.user_id)
            base = updated.get(key) or loaded.get(key) or UserProfile()
            updated[key] = updated_profile(base, seen.evidence, seen.activity)
        await asyncio.gather(
            *(self._profiles.save(org, user, profile) for (org, user), profile in updated.items())
        )


async def _ask(
    model: ModelClient, pointer: NDArray[np.float32], sessions: NDArray[np.float32]
) -> Answers:
    """Send both requests at once; raise the first failure once both have finished."""
    bot, session = await asyncio.gather(
        model.bot_probabilities(pointer), model.session_scores(sessions), return_exceptions=True
    )
    for outcome in (bot, session):
        if isinstance(outcome, BaseException):
            raise outcome
    assert isinstance(bot, BotPrediction) and isinstance(session, SessionPrediction)
    return Answers(bot, session)
