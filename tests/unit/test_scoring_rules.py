"""From the models' answers to a verdict: overrides, reasons, risk level; profiles; breaker.

The session scores come from the repository's session_scores model, run in-process on
sessions of a generated user with a history (the same file Triton serves).
"""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest

from rased.adapters.onnx.model_client import OnnxSessionScorer
from rased.devstack.settings import repository_root
from rased.features.pointer import N_BOT_FEATURES, N_POINTER_FEATURES
from rased.features.profile_comparison import (
    ANOMALY_SCORES,
    N_SESSION_FEATURES,
    SESSION_FEATURE_NAMES,
    Observation,
    haversine_km,
    observe,
    session_features,
)
from rased.features.trajectory import FloatArray
from rased.scoring.evidence import DeviceEvidence, Evidence, PlaceEvidence, gather_evidence
from rased.scoring.profile import UserProfile, updated_profile
from rased.scoring.rules import (
    Assessment,
    SessionScores,
    assess,
    bot_rule,
    contribution_reasons,
    risk_level,
)
from rased.services.scoring.breaker import BreakerState, CircuitBreaker
from rased.training import synthetic_sessions
from rased.v1 import events_pb2, pipeline_pb2, scoring_pb2

HOUR_MS = 3_600_000
T0 = 1_764_000_000_000
MODEL = repository_root() / "model_repository" / "session_scores" / "1" / "model.onnx"


def evidence(
    *,
    pointer_events: int = 50,
    features: FloatArray | None = None,
    holds: list[float] | None = None,
    flights: list[float] | None = None,
    device: DeviceEvidence | None = None,
    place: PlaceEvidence | None = None,
) -> Evidence:
    return Evidence(
        pointer_events=pointer_events,
        pointer_features=np.ones(N_POINTER_FEATURES) if features is None else features,
        bot_features=np.ones(N_BOT_FEATURES),
        hold_times_ms=np.asarray(holds or [], dtype=np.float64),
        flight_times_ms=np.asarray(flights or [], dtype=np.float64),
        device=device,
        place=place,
    )


def typed(
    rng: np.random.Generator,
    hold: float,
    flight: float,
    device: DeviceEvidence | None = None,
    place: PlaceEvidence | None = None,
) -> Evidence:
    """A session of 30 human-like keystrokes around the given median hold and flight."""
    return evidence(
        holds=list(rng.normal(hold, hold * 0.2, 30)),
        flights=list(rng.normal(flight, flight * 0.3, 30)),
        device=device,
        place=place,
    )


def state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state


PARIS = PlaceEvidence(48.8566, 2.3522, "FR", T0)
DEVICE = DeviceEvidence("abc123", webdriver=False, headless_hints=False)


def profile_of(*sessions: Evidence) -> UserProfile:
    profile = UserProfile()
    for session in sessions:
        profile = updated_profile(profile, session)
    return profile


@cache
def scorer() -> OnnxSessionScorer:
    return OnnxSessionScorer(MODEL)


def compiled(session: synthetic_sessions.SyntheticSession) -> pipeline_pb2.CompiledTransaction:
    return pipeline_pb2.CompiledTransaction(batches=session.batches)


@dataclasses.dataclass
class Account:
    """A generated user's profile after ten of their own sessions, and more sessions."""

    person: synthetic_sessions.Person
    profile: UserProfile
    rng: np.random.Generator

    def sessions(self, label: str, case: str, count: int, home: bool = False) -> list[Observation]:
        """The next `count` generated sessions of that case (`home`: in the owner's city)."""
        found = []
        for index in range(10, 2000):
            made = synthetic_sessions.make_session(self.person, label, index, self.rng)
            seen = observe(compiled(made))
            if made.truth.case == case and (not home or self.at_home(seen)):
                found.append(seen)
                if len(found) == count:
                    return found
        raise AssertionError(f"too few {case} sessions generated")

    def session(self, label: str, case: str, home: bool = False) -> Observation:
        return self.sessions(label, case, 1, home)[0]

    def at_home(self, seen: Observation) -> bool:
        _, lat, lon, _ = synthetic_sessions.CITIES[self.person.home]
        place = seen.evidence.place
        return place is not None and haversine_km(lat, lon, place.latitude, place.longitude) < 30


@pytest.fixture
def account() -> Account:
    rng = np.random.default_rng(21)
    (person,) = synthetic_sessions.make_population(1, seed=21)
    profile = UserProfile()
    for index in range(10):
        seen = observe(compiled(synthetic_sessions.make_session(person, "human", index, rng)))
        profile = updated_profile(profile, seen.evidence, seen.activity)
    return Account(person, profile, rng)


def judged(seen: Observation, profile: UserProfile, bot_probability: float = 0.05) -> Assessment:
    """Score a session as the worker does: features, the model, then the rules."""
    features = session_features(seen.evidence, seen.activity, profile)
    scores, contributions = scorer().run(features[None, :].astype(np.float32))
    return assess(
        seen.evidence,
        profile,
        bot_probability,
        SessionScores(scores[0], contributions[0], features),
    )


def test_a_returning_owner_is_allowed_without_reasons(account: Account) -> None:
    owner = judged(account.session("human", "owner", home=True), account.profile)
    assert owner.risk_level == scoring_pb2.RISK_LEVEL_LOW
    assert owner.recommendations == (scoring_pb2.RECOMMENDATION_ALLOW,)
    assert owner.reasons == ()
    for name in ANOMALY_SCORES:
        assert owner.scores[name] < 0.4, name
    assert owner.scores["overall_confidence"] > 0.8


def test_a_takeover_scores_high_where_the_profile_disagrees(account: Account) -> None:
    seen = account.session("takeover", "takeover")
    result = judged(seen, account.profile)
    assert result.scores["behavioral_anomaly"] > 0.7
    assert result.scores["location_anomaly"] > 0.5
    assert result.risk_level >= scoring_pb2.RISK_LEVEL_HIGH
    assert scoring_pb2.RECOMMENDATION_NOTIFY_USER in result.recommendations
    codes = [reason.code for reason, _ in result.reasons]
    assert codes and len(codes) == len(set(codes))
    assert {"FAR_FROM_USUAL_PLACES", "NEW_COUNTRY", "NEW_DEVICE"} & set(codes)
    for reason, share in result.reasons:
        assert reason.description and not reason.description.startswith(("ty_", "dv_", "lo_"))
        assert 0 < share <= 1
        assert reason.value == result.scores[reason.score]
    # Against no history the same session is far less certain to be fraud.
    fresh = judged(seen, UserProfile())
    assert fresh.scores["behavioral_anomaly"] < result.scores["behavioral_anomaly"]


def test_a_takeover_on_the_owners_own_device_is_caught_by_behaviour(account: Account) -> None:
    results = [
        judged(seen, account.profile)
        for seen in account.sessions("takeover", "takeover_own_device", 10)
    ]

    def median(name: str) -> float:
        return float(np.median([r.scores[name] for r in results]))

    # The owner's device at the owner's home: only how the intruder behaves gives it away.
    assert median("device_fingerprint") < 0.2
    assert median("location_anomaly") < 0.2
    assert median("behavioral_anomaly") > 0.5
    caught = [r for r in results if r.risk_level >= scoring_pb2.RISK_LEVEL_MEDIUM]
    assert len(caught) > len(results) / 2
    # ... and the reasons say so in the behaviour's words (typing, mouse, touch, habits).
    device_or_place = {"device_fingerprint", "location_anomaly"}
    assert all(reason.score not in device_or_place for r in caught for reason, _ in r.reasons)


def test_webdriver_and_impossible_travel_override_the_models(account: Account) -> None:
    seen = account.session("human", "owner")
    assert seen.evidence.place is not None and account.profile.last_place is not None
    automated = dataclasses.replace(
        seen.evidence, device=DeviceEvidence("ffff", webdriver=True, headless_hints=False)
    )
    result = judged(Observation(automated, seen.activity), account.profile)
    assert result.scores["bot_detection"] >= 0.97
    assert result.scores["device_fingerprint"] >= 0.9
    assert result.risk_level == scoring_pb2.RISK_LEVEL_CRITICAL
    assert {"WEBDRIVER", "AUTOMATED_BROWSER"} <= {r.code for r, _ in result.reasons}
    # 9,000 km from the last place within an hour: nobody travels that fast.
    last = account.profile.last_place
    far = PlaceEvidence(-last.latitude, last.longitude + 180, "ZZ", last.at_ms + HOUR_MS)
    moved = dataclasses.replace(seen.evidence, place=far)
    travel = judged(Observation(moved, seen.activity), account.profile)
    assert travel.scores["location_anomaly"] >= 0.95
    assert travel.reasons[0][0].code == "IMPOSSIBLE_TRAVEL"


def test_reasons_name_the_largest_contributions_in_words() -> None:
    features = np.zeros(N_SESSION_FEATURES)
    features[SESSION_FEATURE_NAMES.index("lo_log_km_usual")] = np.log1p(4200)
    contributions = np.zeros((len(ANOMALY_SCORES), N_SESSION_FEATURES))
    location = ANOMALY_SCORES.index("location_anomaly")
    for name, share in (
        ("lo_log_km_usual", 3.0),
        ("lo_known_cell", 0.6),
        ("lo_cell_share", 0.4),  # the same reason as lo_known_cell: one "UNUSUAL_PLACE"
        ("lo_new_country", 0.2),  # below the floor: not named
        ("ev_has_location", -2.0),  # lowers the score: never a reason
    ):
        contributions[location, SESSION_FEATURE_NAMES.index(name)] = share
    session = SessionScores(np.array([0.1, 0.9, 0.1, 0.1, 0.8]), contributions, features)
    reasons = contribution_reasons("location_anomaly", 0.9, session, evidence(), UserProfile())
    assert [r.code for r, _ in reasons] == ["FAR_FROM_USUAL_PLACES", "UNUSUAL_PLACE"]
    assert reasons[0][0].description == "4,200 km from the nearest place this user is usually seen"
    assert [round(w, 3) for _, w in reasons] == [round(3.0 / 4.2, 3), round(1.0 / 4.2, 3)]


def test_bot_rule_uses_the_model_and_raises_it_for_webdriver() -> None:
    assert bot_rule(evidence(), 0.12).score == 0.12
    automated = bot_rule(evidence(device=DeviceEvidence("ab", True, False)), 0.12)
    assert automated.score >= 0.95
    assert [r.code for r, _ in automated.reasons] == ["WEBDRIVER"]
    # Too little pointer movement: the model is not trusted, a neutral score is used.
    assert bot_rule(evidence(pointer_events=3), 0.99).score == 0.3


def test_risk_level_thresholds() -> None:
    calm = {
        "bot_detection": 0.05,
        "keystroke_dynamics": 0.5,
        "location_anomaly": 0.2,
        "device_fingerprint": 0.3,
        "behavioral_anomaly": 0.5,
        "overall_confidence": 0.2,
    }
    assert risk_level(calm) == scoring_pb2.RISK_LEVEL_LOW
    assert risk_level({**calm, "bot_detection": 0.5}) == scoring_pb2.RISK_LEVEL_MEDIUM
    assert risk_level({**calm, "bot_detection": 0.7}) == scoring_pb2.RISK_LEVEL_HIGH
    assert risk_level({**calm, "bot_detection": 0.9}) == scoring_pb2.RISK_LEVEL_CRITICAL
    # A new device (0.7 * 0.9 = 0.63: MEDIUM) corroborated by a new country: one step up.
    both = {**calm, "device_fingerprint": 0.7, "location_anomaly": 0.75}
    assert risk_level({**calm, "device_fingerprint": 0.7}) == scoring_pb2.RISK_LEVEL_MEDIUM
    assert risk_level(both) == scoring_pb2.RISK_LEVEL_CRITICAL


def test_profile_round_trips_through_json() -> None:
    rng = np.random.default_rng(3)
    profile = profile_of(typed(rng, 90, 150, DEVICE, PARIS))
    assert UserProfile.from_json(profile.to_json()) == profile
    assert profile.sessions == 1
    assert profile.devices == {"abc123": 1}
    assert profile.countries == {"FR": 1}


def test_evidence_reads_typing_devices_and_places_from_events() -> None:
    compiled = pipeline_pb2.CompiledTransaction(organization_id="o", transaction_id="t")
    batch = compiled.batches.add(batch_id="b1xxxxxx", sequence=0)
    times = [(0, 1, 80), (150, 2, 240), (400, 3, 470)]  # (down, key, up)
    for down, key, up in times:
        for at, action in ((down, events_pb2.KEY_ACTION_DOWN), (up, events_pb2.KEY_ACTION_UP)):
            batch.events.add(
                timestamp_ms=T0 + at,
                keystroke=events_pb2.KeystrokeEvent(action=action, key_id=key),
            )
    batch.events.add(
        timestamp_ms=T0, device=events_pb2.DeviceInfo(fingerprint_hash="ABC", webdriver=True)
    )
    batch.events.add(
        timestamp_ms=T0,
        location=events_pb2.LocationInfo(latitude=1.5, longitude=2.5, country_code="SA"),
    )
    found = gather_evidence(compiled)
    assert list(found.hold_times_ms) == [80, 90, 70]
    assert list(found.flight_times_ms) == [70, 160]
    assert found.device == DeviceEvidence("abc", True, False)
    assert found.place == PlaceEvidence(1.5, 2.5, "SA", T0)
    assert found.pointer_events == 0


def test_breaker_opens_after_failures_and_probes_once_half_open() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=5, clock=lambda: now[0])
    assert breaker.allow()
    breaker.record_failure()
    assert state(breaker) == BreakerState.CLOSED
    breaker.record_failure()
    assert state(breaker) == BreakerState.OPEN
    assert not breaker.allow()
    now[0] = 5.0
    assert breaker.allow()  # the probe
    assert state(breaker) == BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one probe at a time
    breaker.record_failure()
    assert state(breaker) == BreakerState.OPEN
    now[0] = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert state(breaker) == BreakerState.CLOSED
    assert breaker.allow()
