"""Session activity, the profile comparison features and the generated sessions they read."""

from __future__ import annotations

import collections

import numpy as np
import protovalidate
import pytest

from rased.features.profile_comparison import (
    N_SESSION_FEATURES,
    SESSION_FEATURE_NAMES,
    Observation,
    observe,
    session_features,
)
from rased.features.session import ordered_events, session_activity
from rased.features.trajectory import FloatArray
from rased.scoring.profile import UserProfile, updated_profile
from rased.training import synthetic_sessions
from rased.v1 import events_pb2, pipeline_pb2

T0 = 1_764_000_000_000


def event(at: int, **kind: object) -> events_pb2.Event:
    return events_pb2.Event(timestamp_ms=T0 + at, **kind)  # type: ignore[arg-type]


def key(at: int, action: events_pb2.KeyAction.ValueType, key_id: int) -> events_pb2.Event:
    return event(at, keystroke=events_pb2.KeystrokeEvent(action=action, key_id=key_id))


def typed(downs: list[int], hold: int) -> list[events_pb2.Event]:
    events = []
    for n, down in enumerate(downs):
        events += [
            key(down, events_pb2.KEY_ACTION_DOWN, n),
            key(down + hold, events_pb2.KEY_ACTION_UP, n),
        ]
    return events


def named(vector: FloatArray) -> dict[str, float]:
    return dict(zip(SESSION_FEATURE_NAMES, map(float, vector), strict=True))


def compiled(session: synthetic_sessions.SyntheticSession) -> pipeline_pb2.CompiledTransaction:
    return pipeline_pb2.CompiledTransaction(batches=session.batches)


def test_activity_reads_rhythm_pastes_tab_switches_and_device_hints() -> None:
    events = [
        event(0, navigation=events_pb2.NavigationEvent(action=events_pb2.NAVIGATION_ACTION_LOAD)),
        event(
            1,
            device=events_pb2.DeviceInfo(
                user_agent="Mozilla/5.0 (Linux; Android 13) Mobile HeadlessChrome/120",
                platform="Win32",
                max_touch_points=0,
                hardware_concurrency=8,
                device_memory_gb=8,
                fingerprint_hash="ABCD",
            ),
        ),
        event(500, focus=events_pb2.FocusEvent(action=events_pb2.FOCUS_ACTION_FOCUS, field_id="a")),
        *typed([1000, 1200, 1400, 1600, 1800, 2000], hold=100),
        event(
            2500, navigation=events_pb2.NavigationEvent(action=events_pb2.NAVIGATION_ACTION_HIDDEN)
        ),
        event(2600, form=events_pb2.FormEvent(action=events_pb2.FORM_ACTION_PASTE, length=12)),
    ]
    activity = session_activity(events)
    assert activity.keystrokes == 6
    assert activity.rhythm is not None
    assert activity.rhythm[0] == pytest.approx(np.log(100))  # median hold
    assert activity.rhythm[1] == pytest.approx(np.log(200))  # median key-to-key latency
    assert activity.latency_cv == pytest.approx(0.0)  # a perfectly regular cadence
    assert (activity.pastes, activity.pasted_chars, activity.hidden) == (1, 12, 1)
    assert activity.pasted_fraction == pytest.approx(12 / 18)
    assert activity.habits[0] == pytest.approx(np.log1p(1000))  # load to the first key
    device = activity.device
    assert device is not None
    assert device.fingerprint_hash == "abcd"
    assert device.headless  # the user agent names a headless browser
    assert device.inconsistencies == 1  # a mobile user agent on a desktop platform


def test_too_few_keys_give_no_rhythm_and_typing_features_stay_neutral() -> None:
    activity = session_activity(typed([0, 150, 300], hold=90))
    assert activity.rhythm is None
    assert activity.latency_cv is None
    person = synthetic_sessions.make_population(1, seed=3)[0]
    seen = observe(
        compiled(synthetic_sessions.make_session(person, "human", 0, np.random.default_rng(1)))
    )
    features = named(session_features(seen.evidence, activity, UserProfile()))
    assert features["ty_log_hold"] == features["ty_rhythm_distance"] == 0.0
    assert features["ty_compared"] == 0.0


def history(
    person: synthetic_sessions.Person, sessions: int, rng: np.random.Generator
) -> tuple[UserProfile, int]:
    """The profile after `sessions` of the person's own; and how many of them typed."""
    profile = UserProfile()
    typed = 0
    for index in range(sessions):
        seen = observe(compiled(synthetic_sessions.make_session(person, "human", index, rng)))
        profile = updated_profile(profile, seen.evidence, seen.activity)
        typed += seen.activity.rhythm is not None
    return profile, typed


def find(
    person: synthetic_sessions.Person, label: str, case: str, rng: np.random.Generator
) -> Observation:
    """The next generated session of that case in which someone typed."""
    for index in range(200):
        session = synthetic_sessions.make_session(person, label, 20 + index, rng)
        seen = observe(compiled(session))
        if session.truth.case == case and seen.activity.rhythm is not None:
            return seen
    raise AssertionError(f"no {case} session generated")


def test_a_takeover_differs_from_the_returning_owner_where_the_profile_says() -> None:
    rng = np.random.default_rng(5)
    person = synthetic_sessions.make_population(3, seed=11)[1]
    profile, typed = history(person, 10, rng)
    assert typed >= 2
    assert profile.rhythm is not None and profile.rhythm.count == typed
    assert profile.habits is not None and profile.habits.count == 10
    owner = find(person, "human", "owner", rng)
    intruder = find(person, "takeover", "takeover", rng)
    mine = named(session_features(owner.evidence, owner.activity, profile))
    theirs = named(session_features(intruder.evidence, intruder.activity, profile))
    assert mine["ev_log_profile_sessions"] == pytest.approx(np.log1p(10))
    assert mine["dv_compared"] == theirs["dv_compared"] == 1.0
    assert mine["dv_known"] == 1.0 and theirs["dv_known"] == 0.0
    assert theirs["lo_log_km_usual"] > np.log1p(2000 - 200)  # far from every usual place
    assert theirs["ty_rhythm_distance"] > mine["ty_rhythm_distance"]
    assert theirs["hb_distance"] + theirs["pt_dynamics_distance"] > (
        mine["hb_distance"] + mine["pt_dynamics_distance"]
    )
    # A new user: nothing to compare with, so every comparison is 0 and flagged as such.
    fresh = named(session_features(intruder.evidence, intruder.activity, UserProfile()))
    for flag in ("ty_compared", "dv_compared", "lo_compared", "pt_compared", "hb_compared"):
        assert fresh[flag] == 0.0
    assert fresh["lo_log_km_usual"] == fresh["ty_rhythm_distance"] == 0.0
    assert len(SESSION_FEATURE_NAMES) == N_SESSION_FEATURES == len(set(SESSION_FEATURE_NAMES))


def test_profile_version_2_round_trips_and_version_1_still_reads() -> None:
    rng = np.random.default_rng(2)
    person = synthetic_sessions.make_population(1, seed=4)[0]
    profile, _ = history(person, 3, rng)
    assert profile.habits is not None
    data = profile.to_json()
    assert data["v"] == 2
    assert UserProfile.from_json(data) == profile
    old = {k: v for k, v in data.items() if k not in ("rhythm", "touch", "habits")} | {"v": 1}
    read = UserProfile.from_json(old)
    assert read.rhythm is None and read.habits is None
    assert read.devices == profile.devices


def test_generated_sessions_are_reproducible_valid_and_labelled() -> None:
    first = synthetic_sessions.generate_sessions(6, 12, seed=9)
    again = synthetic_sessions.generate_sessions(6, 12, seed=9)
    assert [b.SerializeToString() for s in first for b in s.batches] == [
        b.SerializeToString() for s in again for b in s.batches
    ]
    # A user's history does not depend on how many users are generated with them.
    fewer = synthetic_sessions.generate_sessions(2, 12, seed=9)
    assert [s.batches for s in fewer] == [s.batches for s in first[:24]]
    validator = protovalidate.Validator()
    for session in first:
        for batch in session.batches:
            validator.validate(batch)  # what ingestion would accept from the SDK
    labels = collections.Counter(s.label for s in first)
    assert set(labels) <= set(synthetic_sessions.LABELS)
    assert all(s.label == "human" for s in first if s.session_id.endswith("s0000"))
    for s in first:
        truth = s.truth
        assert truth.case in synthetic_sessions.CASES
        assert truth.typist_is_owner == (s.label == "human")
        assert truth.takeover == (s.label == "takeover")
        assert truth.automation == (s.label == "bot")
    events = ordered_events(first[0].batches)
    kinds = {e.WhichOneof("kind") for e in events}
    assert {"device", "location", "keystroke", "focus", "navigation", "form"} <= kinds
    assert [e.timestamp_ms for e in events] == sorted(e.timestamp_ms for e in events)


def test_generated_bots_type_like_machines_and_people_do_not() -> None:
    rng = np.random.default_rng(8)
    person = synthetic_sessions.make_population(1, seed=6)[0]
    bots = [synthetic_sessions.make_session(person, "bot", i, rng) for i in range(40)]
    humans = [synthetic_sessions.make_session(person, "human", i, rng) for i in range(20)]

    def cv(session: synthetic_sessions.SyntheticSession) -> float | None:
        return session_activity(ordered_events(session.batches)).latency_cv

    human_cvs = [c for c in map(cv, humans) if c is not None]
    bot_cvs = [c for c in map(cv, bots) if c is not None]
    assert min(human_cvs) > 0.1
    assert min(bot_cvs) < 0.05  # fixed-cadence scripts
    assert all(
        any(
            e.device.webdriver or e.device.headless_hints or "Headless" in e.device.user_agent
            for e in ordered_events(b.batches)
            if e.WhichOneof("kind") == "device"
        )
        for b in bots
        if b.truth.case == "bot"
    )
