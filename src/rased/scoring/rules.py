"""Interim scoring rules: transparent, deterministic scores from a transaction's own evidence
and the user's profile, until the models issue (issue 8) replaces them with trained models.

Only `bot_detection` comes from a trained model (`model_repository/bot_detection`); the rules
here adjust it with hard evidence (a browser that reports automation) and compute the other
five scores. Every rule returns a score in [0, 1] and the reasons that raised it, in words a
fraud analyst reads. "No evidence" or "no history" gives a neutral score (documented per
rule) that stays below every risk threshold, with a low `overall_confidence`.

Risk level: each score is weighted (`WEIGHTS`); the largest weighted score is compared with
`RISK_THRESHOLDS` (CRITICAL >= 0.85, HIGH >= 0.65, MEDIUM >= 0.40, else LOW), and two or more
weighted scores at or above `CORROBORATION` (0.55) raise the level by one step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rased.scoring.evidence import Evidence
from rased.scoring.profile import (
    MIN_POINTER_EVENTS,
    UserProfile,
    cell_centre,
    place_cell,
    typing_summary,
)
from rased.v1 import scoring_pb2

RULES_VERSION = "rules:1"

# Below this many pointer events the model's answer is not used (it was trained on drawings
# of dozens to hundreds of events): bot_detection falls back to NEUTRAL_BOT.
MIN_MODEL_POINTER_EVENTS = 10
NEUTRAL_BOT = 0.3
# Neutral scores without evidence or history (below every threshold once weighted).
NEUTRAL_HISTORY = 0.5  # keystroke_dynamics and behavioral_anomaly: no profile to compare with
NEUTRAL_DEVICE = 0.4  # no DeviceInfo at all (the SDK always sends one: slightly suspect)
FIRST_DEVICE = 0.3  # a device, but the user has no device history
KNOWN_DEVICE = 0.05
NEW_DEVICE = 0.7
HEADLESS = 0.9
WEBDRIVER = 0.97
NEUTRAL_LOCATION = 0.2  # no location, or no location history
KNOWN_PLACE = 0.05
NEW_COUNTRY = 0.75
IMPOSSIBLE_TRAVEL = 0.95
# Faster than an airliner over more than a city's width is impossible travel.
MAX_TRAVEL_KMH = 900.0
MIN_TRAVEL_KM = 100.0
# History needed before a profile comparison counts (sessions with that evidence).
MIN_HISTORY = 3
# Flight times this regular (coefficient of variation) over this many keys are scripted.
MACHINE_TYPING_CV = 0.05
MACHINE_TYPING_MIN_FLIGHTS = 10

WEIGHTS: dict[str, float] = {
    "bot_detection": 1.0,
    "device_fingerprint": 0.9,
    "location_anomaly": 0.9,
    "keystroke_dynamics": 0.7,
    "behavioral_anomaly": 0.7,
}
RISK_THRESHOLDS: tuple[tuple[float, scoring_pb2.RiskLevel.ValueType], ...] = (
    (0.85, scoring_pb2.RISK_LEVEL_CRITICAL),
    (0.65, scoring_pb2.RISK_LEVEL_HIGH),
    (0.40, scoring_pb2.RISK_LEVEL_MEDIUM),
)
CORROBORATION = 0.55
# Reasons whose weighted score reaches this are reported (at most MAX_REASONS, largest first).
REASON_FLOOR = 0.4
MAX_REASONS = 3


@dataclass(frozen=True)
class Reason:
    """Why a score is high: a stable code, a sentence, and the score it raised."""

    code: str
    description: str
    score: str  # which score, e.g. "device_fingerprint"
    value: float


@dataclass(frozen=True)
class RuleResult:
    """One rule's score and the reasons behind it."""

    score: float
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class Assessment:
    """The six scores, the risk level, its top reasons and the recommended actions."""

    scores: dict[str, float]
    risk_level: scoring_pb2.RiskLevel.ValueType
    reasons: tuple[tuple[Reason, float], ...]  # (reason, weight), largest contribution first
    recommendations: tuple[scoring_pb2.Recommendation.ValueType, ...]


def _clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def _deviation_score(z: float) -> float:
    """Map a deviation in standard deviations to [0, 1): 0 at 0, 0.5 at 2, 0.8 at 4."""
    return z * z / (z * z + 4.0)


def bot_rule(evidence: Evidence, model_probability: float) -> RuleResult:
    """bot_detection: the model's P(bot), raised by automation the browser itself reports.

    With fewer than MIN_MODEL_POINTER_EVENTS pointer events the model is not used and the
    score is NEUTRAL_BOT. `navigator.webdriver` gives at least WEBDRIVER, headless-browser
    hints at least HEADLESS.
    """
    reasons: list[Reason] = []
    score = NEUTRAL_BOT
    if evidence.pointer_events >= MIN_MODEL_POINTER_EVENTS:
        score = _clip(model_probability)
        if score >= 0.5:
            reasons.append(
                Reason(
                    "POINTER_AUTOMATION",
                    f"Pointer movement looks automated (model probability {score:.2f})",
                    "bot_detection",
                    score,
                )
            )
    device = evidence.device
    if device is not None and device.webdriver:
        score = max(score, WEBDRIVER)
        reasons.append(
            Reason(
                "WEBDRIVER",
                "The browser reports it is driven by automation (webdriver)",
                "bot_detection",
                WEBDRIVER,
            )
        )
    if device is not None and device.headless_hints:
        score = max(score, HEADLESS)
        reasons.append(
            Reason(
                "HEADLESS_BROWSER",
                "The browser shows signs of running headless",
                "bot_detection",
                HEADLESS,
            )
        )
    return RuleResult(score, tuple(reasons))


def device_rule(evidence: Evidence, profile: UserProfile) -> RuleResult:
    """device_fingerprint: a device the user never used, or a browser that hides automation.

    No DeviceInfo: NEUTRAL_DEVICE. No device history: FIRST_DEVICE. A known fingerprint:
    KNOWN_DEVICE; an unknown one: NEW_DEVICE. Webdriver or headless hints: at least HEADLESS.
    """
    device = evidence.device
    if device is None:
        return RuleResult(NEUTRAL_DEVICE)
    reasons: list[Reason] = []
    if not profile.devices or not device.fingerprint_hash:
        score = FIRST_DEVICE
    elif device.fingerprint_hash in profile.devices:
        score = KNOWN_DEVICE
    else:
        score = NEW_DEVICE
        reasons.append(
            Reason(
                "NEW_DEVICE",
                f"A device this user never used before ({len(profile.devices)} known)",
                "device_fingerprint",
                NEW_DEVICE,
            )
        )
    if device.webdriver or device.headless_hints:
        score = max(score, HEADLESS)
        reasons.append(
            Reason(
                "AUTOMATED_BROWSER",
                "The device is an automated or headless browser",
                "device_fingerprint",
                HEADLESS,
            )
        )
    return RuleResult(score, tuple(reasons))


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance between two positions, in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


def location_rule(evidence: Evidence, profile: UserProfile) -> RuleResult:
    """location_anomaly: impossible travel, a new country, or distance from usual places.

    No location or no place history: NEUTRAL_LOCATION. Travel from the last place faster
    than MAX_TRAVEL_KMH over more than MIN_TRAVEL_KM: IMPOSSIBLE_TRAVEL. A country never seen:
    NEW_COUNTRY. A known cell: KNOWN_PLACE. Otherwise 0.2 + 0.4 * min(1, d / 1000 km), d the
    distance to the nearest usual place.
    """
    place = evidence.place
    if place is None or not profile.places:
        return RuleResult(NEUTRAL_LOCATION)
    reasons: list[Reason] = []
    nearest = min(
        haversine_km(place.latitude, place.longitude, *cell_centre(cell)) for cell in profile.places
    )
    if place_cell(place.latitude, place.longitude) in profile.places:
        score = KNOWN_PLACE
    else:
        score = 0.2 + 0.4 * min(1.0, nearest / 1000.0)
        if score >= 0.4:
            reasons.append(
                Reason(
                    "FAR_FROM_USUAL_PLACES",
                    f"{nearest:.0f} km from the nearest place this user is usually seen",
                    "location_anomaly",
                    score,
                )
            )
    if place.country_code and profile.countries and place.country_code not in profile.countries:
        score = max(score, NEW_COUNTRY)
        reasons.append(
            Reason(
                "NEW_COUNTRY",
                f"First time this user is seen in {place.country_code}",
                "location_anomaly",
                NEW_COUNTRY,
            )
        )
    last = profile.last_place
    if last is not None:
        km = haversine_km(last.latitude, last.longitude, place.latitude, place.longitude)
        hours = max(place.at_ms - last.at_ms, 1) / 3_600_000
        if km > MIN_TRAVEL_KM and km / hours > MAX_TRAVEL_KMH:
            score = max(score, IMPOSSIBLE_TRAVEL)
            reasons.append(
                Reason(
                    "IMPOSSIBLE_TRAVEL",
                    f"{km:.0f} km from the last place in {hours * 60:.0f} min",
                    "location_anomaly",
                    IMPOSSIBLE_TRAVEL,
                )
            )
    return RuleResult(_clip(score), tuple(reasons))


def keystroke_rule(evidence: Evidence, profile: UserProfile) -> RuleResult:
    """keystroke_dynamics: typing rhythm versus the user's, or machine-regular typing.

    Without typing evidence or MIN_HISTORY sessions of history: NEUTRAL_HISTORY. Otherwise
    z = the larger deviation of median hold and median flight time from the profile (in
    standard deviations, at least 15% of the mean or 10 ms), mapped by z^2 / (z^2 + 4).
    Flight times with a coefficient of variation under MACHINE_TYPING_CV over at least
    MACHINE_TYPING_MIN_FLIGHTS keys score at least 0.9, history or not.
    """
    score = NEUTRAL_HISTORY
    reasons: list[Reason] = []
    summary = typing_summary(evidence)
    if summary is not None and profile.typing.count >= MIN_HISTORY:
        mean = np.asarray(profile.typing.mean)
        spread = np.maximum(profile.typing.std(), np.maximum(0.15 * mean, 10.0))
        z = float(np.max(np.abs(summary - mean) / spread))
        score = _deviation_score(z)
        if score >= 0.5:
            reasons.append(
                Reason(
                    "TYPING_RHYTHM_CHANGED",
                    f"Typing rhythm differs from this user's usual rhythm ({z:.1f} sd)",
                    "keystroke_dynamics",
                    score,
                )
            )
    flights = evidence.flight_times_ms
    if flights.size >= MACHINE_TYPING_MIN_FLIGHTS and float(np.mean(flights)) > 0:
        cv = float(np.std(flights) / np.mean(flights))
        if cv < MACHINE_TYPING_CV:
            score = max(score, 0.9)
            reasons.append(
                Reason(
                    "MACHINE_REGULAR_TYPING",
                    f"Keys pressed at machine-regular intervals (variation {cv:.1%})",
                    "keystroke_dynamics",
                    0.9,
                )
            )
    return RuleResult(_clip(score), tuple(reasons))


def behavioral_rule(evidence: Evidence, profile: UserProfile) -> RuleResult:
    """behavioral_anomaly: pointer dynamics versus the user's own.

    Without MIN_POINTER_EVENTS events or MIN_HISTORY profiled sessions: NEUTRAL_HISTORY.
    Otherwise m = the mean absolute deviation of the 34 pointer features from the profile
    (each in standard deviations, at least 10% of the mean or 0.05, capped at 6), mapped by
    m^2 / (m^2 + 4).
    """
    stats = profile.pointer
    if evidence.pointer_events < MIN_POINTER_EVENTS or stats is None or stats.count < MIN_HISTORY:
        return RuleResult(NEUTRAL_HISTORY)
    mean = np.asarray(stats.mean)
    spread = np.maximum(stats.std(), np.maximum(0.1 * np.abs(mean), 0.05))
    m = float(np.mean(np.minimum(np.abs(evidence.pointer_features - mean) / spread, 6.0)))
    score = _deviation_score(m)
    reasons: tuple[Reason, ...] = ()
    if score >= 0.5:
        reasons = (
            Reason(
                "POINTER_BEHAVIOUR_CHANGED",
                f"Mouse movement differs from this user's usual movement ({m:.1f} sd)",
                "behavioral_anomaly",
                score,
            ),
        )
    return RuleResult(score, reasons)


def confidence_rule(evidence: Evidence, profile: UserProfile) -> float:
    """overall_confidence: how much evidence the scores rest on, in [0, 1].

    0.35 * min(1, pointer events / 100) + 0.15 * min(1, keystrokes / 40)
    + 0.1 (device info) + 0.1 (location) + 0.3 * min(1, profiled sessions / 5).
    """
    return _clip(
        0.35 * min(1.0, evidence.pointer_events / 100)
        + 0.15 * min(1.0, evidence.keystrokes / 40)
        + (0.1 if evidence.device is not None else 0.0)
        + (0.1 if evidence.place is not None else 0.0)
        + 0.3 * min(1.0, profile.sessions / 5)
    )


def risk_level(scores: dict[str, float]) -> scoring_pb2.RiskLevel.ValueType:
    """Return the risk level of the scores (see the module docstring for the thresholds)."""
    weighted = sorted((WEIGHTS[name] * scores[name] for name in WEIGHTS), reverse=True)
    level = scoring_pb2.RISK_LEVEL_LOW
    for threshold, candidate in RISK_THRESHOLDS:
        if weighted[0] >= threshold:
            level = candidate
            break
    if weighted[1] >= CORROBORATION and level < scoring_pb2.RISK_LEVEL_CRITICAL:
        level = scoring_pb2.RiskLevel.ValueType(level + 1)
    return level


def recommendations(
    level: scoring_pb2.RiskLevel.ValueType, reasons: Sequence[Reason]
) -> tuple[scoring_pb2.Recommendation.ValueType, ...]:
    """Return the actions for a risk level.

    LOW: allow. MEDIUM: challenge. HIGH: step-up authentication and manual review. CRITICAL:
    block and manual review. A new device or place adds "notify the user" from MEDIUM up.
    """
    if level == scoring_pb2.RISK_LEVEL_LOW:
        return (scoring_pb2.RECOMMENDATION_ALLOW,)
    actions: list[scoring_pb2.Recommendation.ValueType] = {
        scoring_pb2.RISK_LEVEL_MEDIUM: [scoring_pb2.RECOMMENDATION_CHALLENGE],
        scoring_pb2.RISK_LEVEL_HIGH: [
            scoring_pb2.RECOMMENDATION_STEP_UP_AUTH,
            scoring_pb2.RECOMMENDATION_MANUAL_REVIEW,
        ],
    }.get(level, [scoring_pb2.RECOMMENDATION_BLOCK, scoring_pb2.RECOMMENDATION_MANUAL_REVIEW])
    if any(r.score in ("device_fingerprint", "location_anomaly") for r in reasons):
        actions.append(scoring_pb2.RECOMMENDATION_NOTIFY_USER)
    return tuple(actions)


def assess(evidence: Evidence, profile: UserProfile, bot_probability: float) -> Assessment:
    """Return the scores, risk level, reasons and recommendations of one transaction."""
    results = {
        "bot_detection": bot_rule(evidence, bot_probability),
        "keystroke_dynamics": keystroke_rule(evidence, profile),
        "location_anomaly": location_rule(evidence, profile),
        "device_fingerprint": device_rule(evidence, profile),
        "behavioral_anomaly": behavioral_rule(evidence, profile),
    }
    scores = {name: result.score for name, result in results.items()}
    scores["overall_confidence"] = confidence_rule(evidence, profile)
    level = risk_level(scores)
    weighted = sorted(
        (
            (reason, WEIGHTS[reason.score])
            for result in results.values()
            for reason in result.reasons
            if WEIGHTS[reason.score] * reason.value >= REASON_FLOOR
        ),
        key=lambda pair: pair[0].value * pair[1],
        reverse=True,
    )
    top = tuple(weighted[:MAX_REASONS])
    return Assessment(scores, level, top, recommendations(level, [r for r, _ in top]))
