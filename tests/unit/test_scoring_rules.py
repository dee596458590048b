"""The interim scoring rules, the risk level, the profile updates and the circuit breaker."""

from __future__ import annotations

import numpy as np

from rased.features.pointer import N_POINTER_FEATURES
from rased.features.trajectory import FloatArray
from rased.scoring.evidence import DeviceEvidence, Evidence, PlaceEvidence, gather_evidence
from rased.scoring.profile import UserProfile, updated_profile
from rased.scoring.rules import (
    NEUTRAL_HISTORY,
    assess,
    behavioral_rule,
    bot_rule,
    device_rule,
    keystroke_rule,
    location_rule,
    risk_level,
)
from rased.services.scoring.breaker import BreakerState, CircuitBreaker
from rased.v1 import events_pb2, pipeline_pb2, scoring_pb2

HOUR_MS = 3_600_000
T0 = 1_764_000_000_000


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


def test_bot_rule_uses_the_model_and_raises_it_for_webdriver() -> None:
    assert bot_rule(evidence(), 0.12).score == 0.12
    automated = bot_rule(evidence(device=DeviceEvidence("ab", True, False)), 0.12)
    assert automated.score >= 0.95
    assert [r.code for r in automated.reasons] == ["WEBDRIVER"]
    # Too little pointer movement: the model is not trusted, a neutral score is used.
    assert bot_rule(evidence(pointer_events=3), 0.99).score == 0.3


def test_device_rule_knows_the_users_devices() -> None:
    profile = profile_of(evidence(device=DEVICE))
    assert device_rule(evidence(device=DEVICE), profile).score <= 0.1
    new = device_rule(evidence(device=DeviceEvidence("ffff", False, False)), profile)
    assert new.score >= 0.7
    assert new.reasons[0].code == "NEW_DEVICE"
    assert device_rule(evidence(device=DEVICE), UserProfile()).score == 0.3
    headless = device_rule(evidence(device=DeviceEvidence("abc123", False, True)), profile)
    assert headless.score >= 0.9


def test_location_rule_flags_impossible_travel_and_new_countries() -> None:
    profile = profile_of(evidence(place=PARIS))
    assert location_rule(evidence(place=PARIS), profile).score <= 0.1
    # Tokyo one hour after Paris: nobody flies 9,700 km in an hour.
    tokyo = PlaceEvidence(35.68, 139.69, "JP", T0 + HOUR_MS)
    result = location_rule(evidence(place=tokyo), profile)
    assert result.score >= 0.95
    assert {r.code for r in result.reasons} >= {"IMPOSSIBLE_TRAVEL", "NEW_COUNTRY"}
    # Lyon a day later: same country, 390 km from usual places, possible.
    lyon = PlaceEvidence(45.76, 4.84, "FR", T0 + 24 * HOUR_MS)
    assert 0.2 < location_rule(evidence(place=lyon), profile).score < 0.5
    assert location_rule(evidence(place=lyon), UserProfile()).score == 0.2


def test_keystroke_rule_compares_typing_rhythm_with_the_profile() -> None:
    rng = np.random.default_rng(1)
    history = [typed(rng, 100, 180) for _ in range(5)]
    profile = profile_of(*history)
    same = keystroke_rule(typed(rng, 100, 180), profile)
    other = keystroke_rule(typed(rng, 60, 400), profile)
    assert same.score < 0.3
    assert other.score > 0.8
    assert other.reasons[0].code == "TYPING_RHYTHM_CHANGED"
    # No history: neutral, whatever the typing.
    assert keystroke_rule(typed(rng, 60, 400), UserProfile()).score == 0.5
    scripted = keystroke_rule(evidence(holds=[50.0] * 20, flights=[100.0] * 20), UserProfile())
    assert scripted.score >= 0.9
    assert scripted.reasons[0].code == "MACHINE_REGULAR_TYPING"


def test_behavioral_rule_compares_pointer_features_with_the_profile() -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(1, 5, N_POINTER_FEATURES)
    history = [evidence(features=base * rng.normal(1, 0.05, base.size)) for _ in range(6)]
    profile = profile_of(*history)
    same = behavioral_rule(evidence(features=base * rng.normal(1, 0.05, base.size)), profile)
    other = behavioral_rule(evidence(features=base * 2.0), profile)
    assert same.score < 0.4
    assert other.score > 0.8
    assert behavioral_rule(evidence(features=base), UserProfile()).score == NEUTRAL_HISTORY


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


def test_assess_names_top_reasons_and_recommends_actions() -> None:
    profile = profile_of(evidence(device=DEVICE, place=PARIS))
    tokyo = PlaceEvidence(35.68, 139.69, "JP", T0 + HOUR_MS)
    stolen = evidence(device=DeviceEvidence("ffff", False, False), place=tokyo)
    result = assess(stolen, profile, bot_probability=0.1)
    assert result.risk_level == scoring_pb2.RISK_LEVEL_CRITICAL
    assert result.reasons[0][0].code == "IMPOSSIBLE_TRAVEL"
    assert scoring_pb2.RECOMMENDATION_BLOCK in result.recommendations
    assert scoring_pb2.RECOMMENDATION_NOTIFY_USER in result.recommendations
    usual = assess(evidence(device=DEVICE, place=PARIS), profile, bot_probability=0.05)
    assert usual.risk_level == scoring_pb2.RISK_LEVEL_LOW
    assert usual.recommendations == (scoring_pb2.RECOMMENDATION_ALLOW,)
    assert usual.reasons == ()
    assert 0 <= usual.scores["overall_confidence"] <= 1
    # The same inputs give the same answer.
    assert assess(stolen, profile, 0.1) == result


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
