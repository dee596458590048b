"""session_scores training on a tiny generated population: targets, fit, ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rased.features.profile_comparison import (
    ANOMALY_SCORES,
    N_SESSION_FEATURES,
    OUTPUT_SCORES,
    SESSION_FEATURE_NAMES,
)
from rased.training import synthetic_sessions
from rased.training.session_scores import (
    LabelledRows,
    SessionTrainingConfig,
    export_session_scores,
    fit_session_scores,
    labelled_rows,
    run_onnx,
)

CFG = SessionTrainingConfig(seed=3)


@pytest.fixture(scope="module")
def rows() -> LabelledRows:
    return labelled_rows(synthetic_sessions.generate_sessions(16, 12, seed=3))


def test_targets_follow_the_generators_ground_truth(rows: LabelledRows) -> None:
    assert rows.x.shape == (16 * 12, N_SESSION_FEATURES)
    owner = rows.case == "owner"
    assert owner.any()
    for name in ANOMALY_SCORES:
        assert (rows.targets[name][owner] == 0).all()  # the owner, at a usual place and device
    bots = ~rows.person
    assert (rows.targets["keystroke_dynamics"][bots] == 1).all()
    assert (rows.targets["device_fingerprint"][bots] == 1).all()
    assert (rows.targets["behavioral_anomaly"] == (rows.fraud & rows.person)).all()
    # A takeover on the owner's own device at home: only the behaviour gives it away.
    own_device = rows.case == "takeover_own_device"
    assert (rows.targets["device_fingerprint"][own_device] == 0).all()
    assert (rows.targets["location_anomaly"][own_device] == 0).all()


def test_fit_and_export_reproduce_the_same_scores_and_bytes(
    rows: LabelledRows, tmp_path: Path
) -> None:
    model = fit_session_scores(rows, CFG)
    first, second = tmp_path / "a" / "model.onnx", tmp_path / "b" / "model.onnx"
    export_session_scores(model, first, rows.x, {"model": "test"})
    export_session_scores(fit_session_scores(rows, CFG), second, rows.x, {"model": "test"})
    assert first.read_bytes() == second.read_bytes()  # seeded: byte-identical
    scores, contributions = run_onnx(first, rows.x)
    assert scores.shape == (rows.x.shape[0], len(OUTPUT_SCORES))
    assert contributions.shape == (rows.x.shape[0], len(ANOMALY_SCORES), N_SESSION_FEATURES)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert np.allclose(scores[:, :4], model.predict(rows.x)[:, :4], atol=1e-4)
    # Contributions plus the intercept are the logit: they explain the score exactly.
    logits = contributions.sum(axis=2) + model.intercept
    assert np.allclose(1 / (1 + np.exp(-logits)), scores[:, :4], atol=1e-4)
    # Each score reads only its own features.
    device = ANOMALY_SCORES.index("device_fingerprint")
    typing = [i for i, n in enumerate(SESSION_FEATURE_NAMES) if n.startswith("ty_")]
    assert (contributions[:, device, typing] == 0).all()
    meta = ort.InferenceSession(str(first)).get_modelmeta().custom_metadata_map
    assert json.loads(meta["feature_names"]) == list(SESSION_FEATURE_NAMES)
    assert json.loads(meta["scores"]) == list(OUTPUT_SCORES)


def test_even_a_tiny_population_ranks_takeovers_above_owners(rows: LabelledRows) -> None:
    scores = fit_session_scores(rows, CFG).predict(rows.x)
    behavioral = scores[:, ANOMALY_SCORES.index("behavioral_anomaly")]
    takeover = np.char.startswith(rows.case, "takeover")
    assert takeover.any()
    assert behavioral[takeover].mean() > 0.5 > behavioral[rows.case == "owner"].mean()
