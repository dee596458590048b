"""From the models' answers to a verdict: scores, hard-evidence overrides, reasons, risk level.

The scores come from two models (`model_repository/`): bot_detection (pointer dynamics)
and session_scores (keystroke_dynamics, location_anomaly, device_fingerprint,
behavioral_anomaly and overall_confidence, from the session compared with the user's
profile; see `rased.features.profile_comparison`). What this module adds:

- Hard evidence overrides a model where a browser or physics says so: a browser that
  reports automation (`navigator.webdriver`) or headless hints raises bot_detection and
  device_fingerprint; travel faster than an airliner from the last place raises
  location_anomaly. With too few pointer events bot_detection's model is not used.
- Reason codes: for each score high enough to matter, the features that pushed it up
  most (session_scores returns each feature's exact share of each score's logit), in
  words a fraud analyst reads, with the share of the score they explain as the weight.
- Risk level: each score is weighted (`WEIGHTS`); the largest weighted score is compared
  with `RISK_THRESHOLDS` (CRITICAL >= 0.85, HIGH >= 0.65, MEDIUM >= 0.40, else LOW), and
  two or more weighted scores at or above `CORROBORATION` (0.55) raise the level by one
  step. overall_confidence is the model's P(this risk level is right).
- Recommendations per risk level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rased.features.profile_comparison import (
    ANOMALY_SCORES,
    OUTPUT_SCORES,
    SESSION_FEATURE_NAMES,
    TYPICAL_LATENCY_CV,
    TYPICAL_LOG_HOLD,
    TYPICAL_LOG_LATENCY,
    TYPICAL_LOG_THINK,
    haversine_km,
)
from rased.features.trajectory import FloatArray
from rased.scoring.evidence import Evidence
from rased.scoring.profile import UserProfile
from rased.v1 import scoring_pb2

RULES_VERSION = "rules:2"

# Below this many pointer events the model's answer is not used (it was trained on drawings
# of dozens to hundreds of events): bot_detection falls back to NEUTRAL_BOT.
MIN_MODEL_POINTER_EVENTS = 10
NEUTRAL_BOT = 0.3
HEADLESS = 0.9
WEBDRIVER = 0.97
IMPOSSIBLE_TRAVEL = 0.95
# Faster than an airliner over more than a city's width is impossible travel.
MAX_TRAVEL_KMH = 900.0
MIN_TRAVEL_KM = 100.0

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
# Reasons are given for scores whose weighted value reaches this (at most MAX_REASONS,
# largest contribution to the risk first), from features adding at least MIN_LOGIT_SHARE
# to the score's logit, at most REASONS_PER_SCORE per score.
REASON_FLOOR = 0.4
MAX_REASONS = 3
REASONS_PER_SCORE = 2
MIN_LOGIT_SHARE = 0.5


@dataclass(frozen=True)
class Reason:
    """Why a score is high: a stable code, a sentence, and the score it raised."""

    code: str
    description: str
    score: str  # which score, e.g. "device_fingerprint"
    value: float  # that score's value


@dataclass(frozen=True)
class RuleResult:
    """One score and the reasons behind it, each with the share of the score it explains."""

    score: float
    reasons: tuple[tuple[Reason, float], ...] = ()


@dataclass(frozen=True)
class SessionScores:
    """session_scores' answer for one transaction, and the features it was given."""

    scores: FloatArray  # OUTPUT_SCORES
    contributions: FloatArray  # [len(ANOMALY_SCORES), len(SESSION_FEATURE_NAMES)]
    features: FloatArray  # SESSION_FEATURE_NAMES


@dataclass(frozen=True)
class Assessment:
    """The six scores, the risk level, its top reasons and the recommended actions."""

    scores: dict[str, float]
    risk_level: scoring_pb2.RiskLevel.ValueType
    reasons: tuple[tuple[Reason, float], ...]  # (reason, share of its score), largest first
    recommendations: tuple[scoring_pb2.Recommendation.ValueType, ...]
    # The risk level of the comparison with the profile and the hard evidence alone (the
    # pointer model left out): whether the session looks like the account's owner.
    identity_risk_level: scoring_pb2.RiskLevel.ValueType = scoring_pb2.RISK_LEVEL_LOW


def _clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def bot_rule(evidence: Evidence, model_probability: float) -> RuleResult:
    """bot_detection: the model's P(bot), raised by automation the browser itself reports.

    With fewer than MIN_MODEL_POINTER_EVENTS pointer events the model is not used and the
    score is NEUTRAL_BOT. `navigator.webdriver` gives at least WEBDRIVER, headless-browser
    hints at least HEADLESS.
    """
    reasons: list[tuple[Reason, float]] = []
    score = NEUTRAL_BOT
    if evidence.pointer_events >= MIN_MODEL_POINTER_EVENTS:
        score = _clip(model_probability)
        if score >= 0.5:
            reasons.append(
                (
                    Reason(
                        "POINTER_AUTOMATION",
                        f"Pointer movement looks automated (model probability {score:.2f})",
                        "bot_detection",
                        score,
                    ),
                    1.0,
                )
            )
    device = evidence.device
    if device is not None and device.webdriver:
        score = max(score, WEBDRIVER)
        reasons.append(
            (
                Reason(
                    "WEBDRIVER",
                    "The browser reports it is driven by automation (webdriver)",
                    "bot_detection",
                    score,
                ),
                1.0,
            )
        )
    if device is not None and device.headless_hints:
        score = max(score, HEADLESS)
        reasons.append(
            (
                Reason(
                    "HEADLESS_BROWSER",
                    "The browser shows signs of running headless",
                    "bot_detection",
                    score,
                ),
                1.0,
            )
        )
    return RuleResult(score, tuple(reasons))


# -- reasons from the contributions -------------------------------------------------------

Phrase = Callable[[dict[str, float], Evidence, UserProfile], str]


def _sd(code: str, name: str, what: str) -> tuple[str, Phrase]:
    """A comparison with the profile, said in standard deviations."""
    return code, lambda f, _e, _p: f"{what} ({f[name]:.1f} sd from this user's usual)"


def _history(_f: dict[str, float], _e: Evidence, p: UserProfile) -> str:
    return f"Little history to compare with ({p.sessions} earlier session(s) of this user)"


def _country(_f: dict[str, float], e: Evidence, _p: UserProfile) -> str:
    country = e.place.country_code if e.place is not None and e.place.country_code else "?"
    return f"First time this user is seen in {country}"


_TYPING = _sd("TYPING_RHYTHM_CHANGED", "ty_rhythm_distance", "Typing rhythm differs")
# Feature -> (code, sentence). A score's features of one code count as one reason; the
# history and evidence-amount features not listed say "little to compare with".
_PHRASES: dict[str, tuple[str, Phrase]] = {
    "ty_rhythm_distance": _TYPING,
    "ty_hold_z": _TYPING,
    "ty_latency_z": _TYPING,
    "ty_latency_cv": (
        "MACHINE_REGULAR_TYPING",
        lambda f, _e, _p: (
            "Keys pressed at unusually regular intervals "
            f"(variation {max(f['ty_latency_cv'] + TYPICAL_LATENCY_CV, 0.0):.0%})"
        ),
    ),
    "ty_log_hold": (
        "UNUSUAL_KEY_HOLD",
        lambda f, _e, _p: (
            f"Keys held {math.exp(f['ty_log_hold'] + TYPICAL_LOG_HOLD):.0f} ms (median), "
            "unlike people's typing"
        ),
    ),
    "ty_log_latency": (
        "UNUSUAL_TYPING_SPEED",
        lambda f, _e, _p: (
            f"{math.exp(f['ty_log_latency'] + TYPICAL_LOG_LATENCY):.0f} ms between keys "
            "(median), unlike people's typing"
        ),
    ),
    "ty_pasted_fraction": (
        "TEXT_PASTED",
        lambda f, _e, _p: f"{f['ty_pasted_fraction']:.0%} of the text was pasted, not typed",
    ),
    "ev_log_keystrokes": (
        "LITTLE_TYPING",
        lambda f, _e, _p: (
            f"Little typing to judge by ({math.expm1(f['ev_log_keystrokes']):.0f} keys)"
        ),
    ),
    "dv_known": (
        "NEW_DEVICE",
        lambda _f, _e, p: f"A device this user never used before ({len(p.devices)} known)",
    ),
    "dv_share": (
        "NEW_DEVICE",
        lambda f, _e, p: (
            f"A device this user rarely or never uses ({f['dv_share']:.0%} of sessions, "
            f"{len(p.devices)} device(s) known)"
        ),
    ),
    "dv_webdriver": ("AUTOMATED_BROWSER", lambda _f, _e, _p: "The browser reports automation"),
    "dv_headless": ("AUTOMATED_BROWSER", lambda _f, _e, _p: "The browser runs headless"),
    "dv_inconsistencies": (
        "INCONSISTENT_DEVICE",
        lambda f, _e, _p: (
            f"The device's attributes contradict each other ({f['dv_inconsistencies']:.0f})"
        ),
    ),
    "ev_has_device": ("NO_DEVICE_INFO", lambda _f, _e, _p: "The session sent no device details"),
    "lo_log_km_usual": (
        "FAR_FROM_USUAL_PLACES",
        lambda f, _e, _p: (
            f"{math.expm1(f['lo_log_km_usual']):,.0f} km from the nearest place this user is "
            "usually seen"
        ),
    ),
    "lo_known_cell": ("UNUSUAL_PLACE", lambda _f, _e, _p: "A place this user was never seen"),
    "lo_cell_share": ("UNUSUAL_PLACE", lambda _f, _e, _p: "A place this user is rarely seen"),
    "lo_new_country": ("NEW_COUNTRY", _country),
    "lo_log_speed_kmh": (
        "FAST_TRAVEL",
        lambda f, _e, _p: (
            f"{math.expm1(f['lo_log_speed_kmh']):,.0f} km/h from the last place this user was seen"
        ),
    ),
    "ev_has_location": ("NO_LOCATION", lambda _f, _e, _p: "The session sent no location"),
    "pt_dynamics_distance": _sd(
        "POINTER_BEHAVIOUR_CHANGED", "pt_dynamics_distance", "Mouse movement differs"
    ),
    "tc_distance": _sd(
        "TOUCH_BEHAVIOUR_CHANGED", "tc_distance", "Touch pressure and swipes differ"
    ),
    "tc_constant_force": (
        "SYNTHETIC_TOUCH",
        lambda _f, _e, _p: "Every touch reports exactly the same pressure",
    ),
    "hb_distance": _sd(
        "NAVIGATION_HABITS_CHANGED", "hb_distance", "Navigation and form filling differ"
    ),
    "hb_pastes": ("PASTED_INPUT", lambda f, _e, _p: f"Pasted into {f['hb_pastes']:.0f} field(s)"),
    "hb_hidden": (
        "SWITCHED_AWAY",
        lambda f, _e, _p: f"Left the page {f['hb_hidden']:.0f} time(s) during the transaction",
    ),
    "hb_log_think": (
        "UNUSUAL_PACE",
        lambda f, _e, _p: (
            f"First input {math.expm1(f['hb_log_think'] + TYPICAL_LOG_THINK) / 1000:.1f} s "
            "after the page loaded"
        ),
    ),
}
_UNCOMPARED = {
    "ty_compared": "typing rhythm",
    "dv_compared": "device",
    "lo_compared": "place",
    "pt_compared": "mouse movement",
    "tc_compared": "touch",
    "hb_compared": "navigation habits",
}


def _uncompared(what: str) -> Phrase:
    def phrase(_f: dict[str, float], _e: Evidence, p: UserProfile) -> str:
        return f"Nothing to compare this session's {what} with ({p.sessions} earlier session(s))"

    return phrase


for _feature, _what in _UNCOMPARED.items():
    _PHRASES[_feature] = ("NOT_COMPARED", _uncompared(_what))
for _feature in ("ev_log_pointer_events", "ev_log_touch_events"):
    _PHRASES[_feature] = (
        "LITTLE_ACTIVITY",
        lambda f, _e, _p: (
            f"Little mouse or touch activity to judge by "
            f"({math.expm1(f['ev_log_pointer_events']):.0f} pointer, "
            f"{math.expm1(f['ev_log_touch_events']):.0f} touch events)"
        ),
    )
for _feature in SESSION_FEATURE_NAMES:
    _PHRASES.setdefault(_feature, ("LITTLE_HISTORY", _history))


def contribution_reasons(
    name: str, value: float, session: SessionScores, evidence: Evidence, profile: UserProfile
) -> tuple[tuple[Reason, float], ...]:
    """Return a session score's top reasons: features that raised its logit most.

    Each reason's weight is the share of the score's positive contributions it explains.
    """
    shares = session.contributions[ANOMALY_SCORES.index(name)]
    features = dict(zip(SESSION_FEATURE_NAMES, map(float, session.features), strict=True))
    by_code: dict[str, tuple[float, str, float]] = {}  # code -> (sum, top feature, its share)
    for feature, share in zip(SESSION_FEATURE_NAMES, map(float, shares), strict=True):
        if share <= 0:
            continue
        code = _PHRASES[feature][0]
        total, top, top_share = by_code.get(code, (0.0, feature, share))
        # The sentence is that of the code's largest feature.
        if share > top_share:
            top, top_share = feature, share
        by_code[code] = (total + share, top, top_share)
    positive = sum(total for total, _, _ in by_code.values())
    ranked = sorted(by_code.items(), key=lambda item: item[1][0], reverse=True)
    out = []
    for code, (total, top, _) in ranked[:REASONS_PER_SCORE]:
        if total < MIN_LOGIT_SHARE:
            break
        sentence = _PHRASES[top][1](features, evidence, profile)
        out.append((Reason(code, sentence, name, value), total / positive))
    return tuple(out)


# -- the session scores with their overrides ----------------------------------------------


def _travel(evidence: Evidence, profile: UserProfile) -> tuple[float, float] | None:
    """Return (km, hours) from the last place, or None without both places."""
    last, place = profile.last_place, evidence.place
    if last is None or place is None:
        return None
    km = haversine_km(last.latitude, last.longitude, place.latitude, place.longitude)
    return km, max(place.at_ms - last.at_ms, 1) / 3_600_000


def session_rules(
    session: SessionScores, evidence: Evidence, profile: UserProfile
) -> dict[str, RuleResult]:
    """Return the four anomaly scores with their reasons and hard-evidence overrides."""
    results: dict[str, RuleResult] = {}
    for k, name in enumerate(ANOMALY_SCORES):
        value = _clip(float(session.scores[k]))
        results[name] = RuleResult(value, ())
    device = evidence.device
    if device is not None and (device.webdriver or device.headless_hints):
        value = max(results["device_fingerprint"].score, HEADLESS)
        reason = Reason(
            "AUTOMATED_BROWSER",
            "The device is an automated or headless browser",
            "device_fingerprint",
            value,
        )
        results["device_fingerprint"] = RuleResult(value, ((reason, 1.0),))
    travel = _travel(evidence, profile)
    if travel is not None and travel[0] > MIN_TRAVEL_KM and travel[0] / travel[1] > MAX_TRAVEL_KMH:
        km, hours = travel
        value = max(results["location_anomaly"].score, IMPOSSIBLE_TRAVEL)
        reason = Reason(
            "IMPOSSIBLE_TRAVEL",
            f"{km:,.0f} km from the last place in {hours * 60:.0f} min",
            "location_anomaly",
            value,
        )
        results["location_anomaly"] = RuleResult(value, ((reason, 1.0),))
    for name, result in results.items():
        if WEIGHTS[name] * result.score >= REASON_FLOOR:
            learnt = contribution_reasons(name, result.score, session, evidence, profile)
            # The hard evidence first; the model's reasons after it, without repeats.
            codes = {r.code for r, _ in result.reasons}
            extra = tuple((r, w) for r, w in learnt if r.code not in codes)
            results[name] = RuleResult(result.score, result.reasons + extra)
    return results


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


def assess(
    evidence: Evidence, profile: UserProfile, bot_probability: float, session: SessionScores
) -> Assessment:
    """Return the scores, risk level, reasons and recommendations of one transaction."""
    results = {"bot_detection": bot_rule(evidence, bot_probability)}
    results.update(session_rules(session, evidence, profile))
    scores = {name: result.score for name, result in results.items()}
    scores["overall_confidence"] = _clip(
        float(session.scores[OUTPUT_SCORES.index("overall_confidence")])
    )
    level = risk_level(scores)
    device = evidence.device
    hard = 0.0
    if device is not None:
        hard = WEBDRIVER if device.webdriver else HEADLESS if device.headless_hints else 0.0
    identity = risk_level({**scores, "bot_detection": hard})
    ranked = sorted(
        (
            (reason, share)
            for result in results.values()
            for reason, share in result.reasons
            if WEIGHTS[reason.score] * reason.value >= REASON_FLOOR
        ),
        key=lambda pair: WEIGHTS[pair[0].score] * pair[0].value * pair[1],
        reverse=True,
    )
    # One reason per code (typing, say, can raise two scores): the largest contribution.
    top: list[tuple[Reason, float]] = []
    for reason, share in ranked:
        if len(top) < MAX_REASONS and all(r.code != reason.code for r, _ in top):
            top.append((reason, share))
    return Assessment(
        scores, level, tuple(top), recommendations(level, [r for r, _ in top]), identity
    )


__all__ = [
    "RULES_VERSION",
    "Assessment",
    "Reason",
    "SessionScores",
    "assess",
    "bot_rule",
    "haversine_km",
    "recommendations",
    "risk_level",
]
