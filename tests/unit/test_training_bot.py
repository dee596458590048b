"""Split, synthetic bots and ONNX export of the bot_detection training."""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from balabit_layout import balabit_people
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import ExtraTreesClassifier

from rased.eval import generated_sessions
from rased.eval.onnx_model import ModelError, OnnxClassifier
from rased.features.pointer import BOT_FEATURE_NAMES, N_BOT_FEATURES
from rased.features.trajectory import PointerAction, Trajectory
from rased.training import synthetic_bots, synthetic_sessions
from rased.training.bot_detection import (
    GENERATED_SEED_OFFSET,
    BotTrainingConfig,
    decimated,
    features_of,
    fit_model,
    reference_samples,
    train_bot_detection,
)
from rased.training.onnx_export import ExportError, export_classifier, run_probabilities
from rased.training.split import is_test


def test_split_is_deterministic_and_near_its_fraction() -> None:
    ids = [f"session-{i}" for i in range(4000)]
    first = [is_test(7, "src", s) for s in ids]
    assert first == [is_test(7, "src", s) for s in reversed(ids)][::-1]
    assert 0.22 < np.mean(first) < 0.28
    assert first != [is_test(8, "src", s) for s in ids]


def test_synthetic_bots_are_reproducible_and_valid() -> None:
    a, fam_a = synthetic_bots.generate_many(10, seed=3)
    b, fam_b = synthetic_bots.generate_many(10, seed=3)
    assert fam_a == fam_b
    assert set(fam_a) == set(synthetic_bots.FAMILIES)
    for ta, tb in zip(a, b, strict=True):
        assert np.array_equal(ta.x, tb.x)
        assert np.array_equal(ta.t_ms, tb.t_ms)
        assert ta.action[0] == PointerAction.DOWN
        assert ta.action[-1] == PointerAction.UP
    assert np.isfinite(features_of(a)).all()
    with pytest.raises(ValueError, match="unknown bot family"):
        synthetic_bots.generate("teleporter", np.random.default_rng(0))


def test_only_sigmoid_calibration_of_one_ensemble_exports(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (120, 4))
    y = (x[:, 0] > 0).astype(np.int64)
    isotonic = CalibratedClassifierCV(
        ExtraTreesClassifier(n_estimators=5, random_state=0), method="isotonic", cv=3
    ).fit(x, y)
    with pytest.raises(ExportError, match="method='sigmoid', ensemble=False"):
        export_classifier(isotonic, ["a", "b", "c", "d"], tmp_path / "m.onnx", x, {})


def test_decimated_keeps_clicks_and_half_the_moves() -> None:
    actions = [PointerAction.DOWN] + [PointerAction.MOVE] * 10 + [PointerAction.UP]
    traj = Trajectory.from_arrays(np.arange(12.0), np.arange(12.0), np.zeros(12), actions)
    out = decimated(traj)
    assert out.action.tolist().count(PointerAction.MOVE) == 5
    assert out.action[0] == PointerAction.DOWN
    assert out.action[-1] == PointerAction.UP


def test_reference_samples_surround_the_people() -> None:
    human = np.random.default_rng(0).normal(0, 1, (500, 3))
    ref = reference_samples(human, 1000, np.random.default_rng(1))
    assert ref.shape == (1000, 3)
    assert ref.min() < human.min() and ref.max() > human.max()


def test_onnx_export_matches_scikit_learn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (300, N_BOT_FEATURES))
    y = (x[:, 0] + 0.5 * rng.normal(0, 1, 300) > 0).astype(np.int64)
    model = fit_model(x, y, seed=0)
    path = tmp_path / "m" / "1" / "model.onnx"
    export_classifier(model, BOT_FEATURE_NAMES, path, x, {"model": "test"})
    got = run_probabilities(path, x)
    assert np.allclose(got, model.predict_proba(x.astype(np.float32))[:, 1], atol=1e-4)
    assert np.allclose(OnnxClassifier(path, BOT_FEATURE_NAMES).probabilities(x), got)
    with pytest.raises(ModelError, match="other features"):
        OnnxClassifier(path, [*BOT_FEATURE_NAMES, "extra"])
    with pytest.raises(ModelError, match="no such model"):
        OnnxClassifier(tmp_path / "missing.onnx", BOT_FEATURE_NAMES)


# A slice of DELBOT-Mouse (MIT licence) shipped with the tests: see tests/data/README.md.
DELBOT_SLICE = Path(__file__).resolve().parents[1] / "data" / "delbot_mouse_slice.csv.gz"


def delbot_head(dest: Path, per_source: int) -> None:
    """Write the first `per_source` sessions of every DELBOT source (both splits)."""
    with gzip.open(DELBOT_SLICE, "rt", newline="") as src:
        reader = csv.reader(src)
        rows = [next(reader)]
        kept: dict[str, set[str]] = {}
        for row in reader:
            chosen = kept.setdefault(row[1], set())
            if row[2] not in chosen and len(chosen) >= per_source:
                continue
            chosen.add(row[2])
            rows.append(row)
    with gzip.open(dest, "wt", newline="") as out:
        csv.writer(out).writerows(rows)


def test_training_includes_generated_sessions_from_their_own_seed(tmp_path: Path) -> None:
    delbot_head(tmp_path / "delbot.csv.gz", per_source=10)
    cfg = BotTrainingConfig(
        seed=3,
        synthetic_per_family=4,
        reference_samples=40,
        held_out_evaluation=False,
        generated_users=5,
        generated_sessions_per_user=8,
        generated_evaluation=False,
    )
    messages: list[str] = []
    report = train_bot_detection(tmp_path / "delbot.csv.gz", tmp_path, cfg, messages.append)
    assert cfg.generated_seed == 3 + GENERATED_SEED_OFFSET != generated_sessions.EVAL_SEED
    assert report.counts["generated_seed"] == cfg.generated_seed
    assert report.counts["generated_human"] > 0 and report.counts["generated_bot"] > 0
    rows = generated_sessions.pointer_rows(
        synthetic_sessions.generate_sessions(5, 8, cfg.generated_seed, bot_rate=0.4)
    )
    assert report.counts["generated_bot"] == int(rows.is_bot.sum())
    assert report.counts["generated_human"] == int((rows.is_bot == 0).sum())
    # Generated sessions are trained on, never tested: the test split is DELBOT's alone.
    assert report.counts["test_sessions"] == report.test_metrics["sessions"]
    assert all(src.startswith("circles_") for src in report.test_per_source)
    assert (tmp_path / "bot_detection" / "1" / "model.onnx").is_file()
    json.dumps(asdict(report))  # what python -m rased.training writes


def test_training_refuses_a_seed_whose_population_is_the_evaluation_one(tmp_path: Path) -> None:
    cfg = BotTrainingConfig(seed=generated_sessions.EVAL_SEED - GENERATED_SEED_OFFSET)
    with pytest.raises(ValueError, match="evaluation"):
        train_bot_detection(tmp_path / "unused.csv.gz", tmp_path, cfg, lambda _: None)


def test_training_fits_desktop_people_and_scores_their_test_windows(tmp_path: Path) -> None:
    delbot_head(tmp_path / "delbot.csv.gz", per_source=10)
    # Six people (the held-out fit leaves out the first three), one more session each to test.
    balabit_people(tmp_path / "train", users=6, sessions_per_user=2)
    balabit_people(tmp_path / "test", users=6, sessions_per_user=1)
    cfg = BotTrainingConfig(
        seed=3,
        synthetic_per_family=4,
        reference_samples=40,
        generated_users=3,
        generated_sessions_per_user=4,
        generated_evaluation=False,
        desktop_people_windows=30,
    )
    messages: list[str] = []
    report = train_bot_detection(
        tmp_path / "delbot.csv.gz",
        tmp_path,
        cfg,
        messages.append,
        desktop_people=(tmp_path / "train", tmp_path / "test"),
    )
    assert report.counts["desktop_people"] == 30
    assert report.desktop_people_test.windows > 0
    assert report.desktop_people_test.medium_or_more is not None
    assert report.desktop_people_unseen_users == ["user0", "user1", "user2"]
    assert 0 < report.desktop_people_unseen.windows < report.desktop_people_test.windows
    # Desktop people are always trained on: never a held-out device of their own.
    assert "desktop_people" not in report.held_out_device_auc
    assert any("desktop people's test windows" in m for m in messages)
    # A group without test sessions in this small slice is skipped, said so, not a crash.
    skipped = [m for m in messages if m.endswith("no test sessions, skipped")]
    assert len(skipped) + len(report.held_out_device_auc) + len(report.held_out_family_auc) == 12
    json.dumps(asdict(report))
