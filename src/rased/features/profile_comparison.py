"""The session_scores model's input: one session's evidence compared with the user's profile.

Training (`rased.training.session_scores`) and the scoring worker call the same two
functions: `observe` reads a compiled transaction, `session_features` turns what it shows
and the user's profile (`rased.scoring.profile`, before this session) into a fixed-length
vector named by `SESSION_FEATURE_NAMES`.

Comparisons are in standard deviations of the user's own history: |value - mean| / sd,
where sd shrinks the profile's spread towards a prior (the typical session-to-session
spread of one person) so a profile of two or three sessions does not call every small
difference an anomaly, and is capped at `Z_CAP`. Without history (or without the
evidence) a comparison is 0 and its `*_compared` flag 0, and absolute values are centred
on a typical person's, so "nothing to compare" never looks like an anomaly by itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rased.features.session import SessionActivity, ordered_events, session_activity
from rased.features.trajectory import FloatArray
from rased.scoring.evidence import Evidence, gather_evidence
from rased.scoring.profile import (
    MIN_POINTER_EVENTS,
    RunningStats,
    UserProfile,
    cell_centre,
    place_cell,
)
from rased.v1 import pipeline_pb2

# The session_scores model served by Triton: its name and the order of its outputs.
SESSION_SCORES_MODEL = "session_scores"
ANOMALY_SCORES = (
    "keystroke_dynamics",
    "location_anomaly",
    "device_fingerprint",
    "behavioral_anomaly",
)  # rows of the "contributions" output
OUTPUT_SCORES = (*ANOMALY_SCORES, "overall_confidence")  # columns of the "scores" output

# Sessions of history a comparison needs (the first session has no spread).
MIN_HISTORY = 2
# Weight, in sessions, of the prior spread against the profile's own.
PRIOR_SESSIONS = 3.0
Z_CAP = 8.0
# Typical values a feature is centred on (absent evidence reads as typical).
TYPICAL_LOG_HOLD = math.log(95.0)
TYPICAL_LOG_LATENCY = math.log(210.0)
TYPICAL_LATENCY_CV = 0.4
TYPICAL_LOG_THINK = math.log1p(3000.0)
# Within-person, session-to-session spread (sd) of each summary: the priors.
RHYTHM_PRIOR_SD = np.array([0.12, 0.15, 0.08, 0.08])
TOUCH_PRIOR_SD = np.array([0.05, 0.1, 0.2, 0.05])
HABIT_PRIOR_SD = np.array([0.6, 0.4, 1.0, 0.3])
# Pointer features: 10% of the usual value, at least 0.05.
POINTER_PRIOR_FRACTION = 0.1
POINTER_PRIOR_FLOOR = 0.05
MAX_COUNT_FEATURE = 3  # pastes, tab switches, inconsistencies: 3 or more are all "many"

SESSION_FEATURE_NAMES: tuple[str, ...] = (
    # How much there is to go on (overall_confidence reads these).
    "ev_log_keystrokes",
    "ev_log_pointer_events",
    "ev_log_touch_events",
    "ev_has_device",
    "ev_has_location",
    "ev_log_profile_sessions",
    "ev_log_rhythm_history",
    "ev_log_pointer_history",
    "ev_log_touch_history",
    # Typing.
    "ty_compared",
    "ty_rhythm_distance",  # mean |z| of the rhythm summary
    "ty_hold_z",
    "ty_latency_z",
    "ty_log_hold",  # log(median hold / typical)
    "ty_log_latency",
    "ty_latency_cv",  # key-to-key variation minus a typical person's
    "ty_pasted_fraction",
    # Device.
    "dv_compared",
    "dv_known",
    "dv_share",  # share of the user's sessions on this device
    "dv_log_known_devices",
    "dv_webdriver",
    "dv_headless",
    "dv_inconsistencies",
    # Location.
    "lo_compared",
    "lo_known_cell",
    "lo_cell_share",
    "lo_log_km_usual",  # log(1 + km to the nearest usual place)
    "lo_new_country",
    "lo_log_speed_kmh",  # log(1 + km/h from the last place)
    # Pointer (mouse dynamics).
    "pt_compared",
    "pt_dynamics_distance",  # mean |z| of the 34 pointer features
    # Touch.
    "tc_compared",
    "tc_distance",
    "tc_constant_force",
    # Session habits.
    "hb_compared",
    "hb_distance",
    "hb_pastes",
    "hb_hidden",
    "hb_log_think",
)
N_SESSION_FEATURES = len(SESSION_FEATURE_NAMES)
_INDEX = {name: i for i, name in enumerate(SESSION_FEATURE_NAMES)}


@dataclass(frozen=True)
class Observation:
    """What one compiled transaction shows: the evidence and the activity summaries."""

    evidence: Evidence
    activity: SessionActivity


def observe(compiled: pipeline_pb2.CompiledTransaction) -> Observation:
    """Return the evidence and activity of one compiled transaction."""
    return Observation(
        gather_evidence(compiled), session_activity(ordered_events(compiled.batches))
    )


def feature_index(name: str) -> int:
    """Return the column of a feature in the vector."""
    return _INDEX[name]


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance between two positions, in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


def deviations(
    values: FloatArray, stats: RunningStats | None, prior_sd: FloatArray
) -> FloatArray | None:
    """Return |values - mean| in (shrunk) standard deviations, or None without history."""
    if stats is None or stats.count < MIN_HISTORY:
        return None
    seen = stats.count - 1  # degrees of freedom of the profile's own spread
    variance = np.asarray(stats.m2, dtype=np.float64) / seen
    shrunk = (seen * variance + PRIOR_SESSIONS * prior_sd**2) / (seen + PRIOR_SESSIONS)
    z: FloatArray = np.minimum(np.abs(values - np.asarray(stats.mean)) / np.sqrt(shrunk), Z_CAP)
    return z


def _log_count(n: int | float) -> float:
    return math.log1p(max(float(n), 0.0))


def _typing(f: dict[str, float], activity: SessionActivity, profile: UserProfile) -> None:
    f["ty_pasted_fraction"] = activity.pasted_fraction
    rhythm = activity.rhythm
    if rhythm is None:
        return
    f["ty_log_hold"] = float(rhythm[0]) - TYPICAL_LOG_HOLD
    f["ty_log_latency"] = float(rhythm[1]) - TYPICAL_LOG_LATENCY
    if activity.latency_cv is not None:
        f["ty_latency_cv"] = activity.latency_cv - TYPICAL_LATENCY_CV
    z = deviations(rhythm, profile.rhythm, RHYTHM_PRIOR_SD)
    if z is not None:
        f["ty_compared"] = 1.0
        f["ty_rhythm_distance"] = float(z.mean())
        f["ty_hold_z"], f["ty_latency_z"] = float(z[0]), float(z[1])


def _device(f: dict[str, float], activity: SessionActivity, profile: UserProfile) -> None:
    device = activity.device
    f["dv_log_known_devices"] = _log_count(len(profile.devices))
    if device is None:
        return
    f["ev_has_device"] = 1.0
    f["dv_webdriver"] = float(device.webdriver)
    f["dv_headless"] = float(device.headless)
    f["dv_inconsistencies"] = float(min(device.inconsistencies, MAX_COUNT_FEATURE))
    if device.fingerprint_hash and profile.devices:
        f["dv_compared"] = 1.0
        seen = profile.devices.get(device.fingerprint_hash, 0)
        f["dv_known"] = float(seen > 0)
        f["dv_share"] = seen / max(profile.sessions, 1)


def _location(f: dict[str, float], evidence: Evidence, profile: UserProfile) -> None:
    place = evidence.place
    if place is None:
        return
    f["ev_has_location"] = 1.0
    last = profile.last_place
    if last is not None:
        km = haversine_km(last.latitude, last.longitude, place.latitude, place.longitude)
        # At least a minute between sessions: positions jitter, clocks differ.
        hours = max(place.at_ms - last.at_ms, 60_000) / 3_600_000
        f["lo_log_speed_kmh"] = _log_count(km / hours)
    if not profile.places:
        return
    f["lo_compared"] = 1.0
    cell = place_cell(place.latitude, place.longitude)
    f["lo_known_cell"] = float(cell in profile.places)
    f["lo_cell_share"] = profile.places.get(cell, 0) / max(profile.sessions, 1)
    nearest = min(
        haversine_km(place.latitude, place.longitude, *cell_centre(c)) for c in profile.places
    )
    f["lo_log_km_usual"] = _log_count(nearest)
    if place.country_code and profile.countries:
        f["lo_new_country"] = float(place.country_code not in profile.countries)


def _behaviour(
    f: dict[str, float], evidence: Evidence, activity: SessionActivity, profile: UserProfile
) -> None:
    stats = profile.pointer
    if evidence.pointer_events >= MIN_POINTER_EVENTS and stats is not None:
        mean = np.abs(np.asarray(stats.mean))
        prior = np.maximum(POINTER_PRIOR_FRACTION * mean, POINTER_PRIOR_FLOOR)
        z = deviations(evidence.pointer_features, stats, prior)
        if z is not None:
            f["pt_compared"] = 1.0
            f["pt_dynamics_distance"] = float(z.mean())
    f["tc_constant_force"] = float(activity.constant_force)
    if activity.touch is not None:
        z = deviations(activity.touch, profile.touch, TOUCH_PRIOR_SD)
        if z is not None:
            f["tc_compared"] = 1.0
            f["tc_distance"] = float(z.mean())
    f["hb_pastes"] = float(min(activity.pastes, MAX_COUNT_FEATURE))
    f["hb_hidden"] = float(min(activity.hidden, MAX_COUNT_FEATURE))
    f["hb_log_think"] = float(activity.habits[0]) - TYPICAL_LOG_THINK
    z = deviations(activity.habits, profile.habits, HABIT_PRIOR_SD)
    if z is not None:
        f["hb_compared"] = 1.0
        f["hb_distance"] = float(z.mean())


def session_features(
    evidence: Evidence, activity: SessionActivity, profile: UserProfile
) -> FloatArray:
    """Return the `SESSION_FEATURE_NAMES` vector of a session against the user's profile.

    `profile` is the profile before this session (the store's record when it is scored).
    """
    f = dict.fromkeys(SESSION_FEATURE_NAMES, 0.0)
    f["ev_log_keystrokes"] = _log_count(activity.keystrokes)
    f["ev_log_pointer_events"] = _log_count(evidence.pointer_events)
    f["ev_log_touch_events"] = _log_count(activity.touch_events)
    f["ev_log_profile_sessions"] = _log_count(profile.sessions)
    f["ev_log_rhythm_history"] = _log_count(profile.rhythm.count if profile.rhythm else 0)
    f["ev_log_pointer_history"] = _log_count(profile.pointer.count if profile.pointer else 0)
    f["ev_log_touch_history"] = _log_count(profile.touch.count if profile.touch else 0)
    _typing(f, activity, profile)
    _device(f, activity, profile)
    _location(f, evidence, profile)
    _behaviour(f, evidence, activity, profile)
    return np.array([f[name] for name in SESSION_FEATURE_NAMES], dtype=np.float64)
