"""bot_detection: a calibrated classifier of pointer trajectories, person (0) or bot (1).

Input: `rased.features.pointer.bot_features` (`BOT_FEATURE_NAMES`): how the pointer moves
and how regular its steps and intervals are, without the scale of the drawing or the
per-event kinematics a device's event delivery distorts.

Training data: DELBOT-Mouse sessions (seeded split by session; the test part is never
fitted), scripted-bot trajectories from `synthetic_bots`, and "reference" points drawn
around and between the people's feature values and labelled bot. The reference points
teach the model that whatever does not look like a person is suspect, which is what lets
it flag bot families it has never seen (classification against a reference density, as
in Hastie, Tibshirani & Friedman, Elements of Statistical Learning, section 14.2.4).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold

from rased.eval.metrics import equal_error_rate, expected_calibration_error, roc_auc
from rased.features.pointer import BOT_FEATURE_NAMES, bot_features
from rased.features.trajectory import PointerAction, Trajectory
from rased.training import synthetic_bots
from rased.training.datasets import LabelledSession, read_delbot
from rased.training.onnx_export import export_classifier
from rased.training.split import is_test

MODEL_NAME = "bot_detection"
SYNTHETIC_SOURCE = "synthetic_bot_"
_CALIBRATION_FOLDS = 5
_JOBS = 2
_REFERENCE_MARGIN = 1.0  # the reference box spans the people's 1-99% range, widened by this

Log = Callable[[str], None]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class BotTrainingConfig:
    """Settings of one training run."""

    seed: int = 42
    test_fraction: float = 0.25
    synthetic_per_family: int = 200
    reference_samples: int = 1000
    held_out_evaluation: bool = True


@dataclass
class BotTrainingReport:
    """What one training run measured (on sessions it never fitted)."""

    test_metrics: dict[str, float] = field(default_factory=dict)
    test_per_source: dict[str, dict[str, float]] = field(default_factory=dict)
    held_out_family_auc: dict[str, float] = field(default_factory=dict)
    held_out_device_auc: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def features_of(trajectories: Sequence[Trajectory]) -> FloatArray:
    """Return the bot-feature matrix of trajectories (`BOT_FEATURE_NAMES`), one row each."""
    if not trajectories:
        return np.zeros((0, len(BOT_FEATURE_NAMES)))
    return np.vstack([bot_features(t) for t in trajectories])


def decimated(trajectory: Trajectory, keep_every: int = 2) -> Trajectory:
    """Return the trajectory with every other move dropped: the same person on a slower device.

    Presses and releases are kept; only the sampling rate of movement changes.
    """
    is_move = trajectory.action == PointerAction.MOVE
    order = np.cumsum(is_move)
    keep = ~is_move | (order % keep_every == 0)
    idx = np.flatnonzero(keep)
    return Trajectory(
        t_ms=trajectory.t_ms[idx],
        x=trajectory.x[idx],
        y=trajectory.y[idx],
        action=trajectory.action[idx],
    )


def reference_samples(human: FloatArray, n: int, rng: np.random.Generator) -> FloatArray:
    """Return `n` points of the reference density around the people's features.

    Half are uniform in the people's 1-99% box widened on each side; half recombine
    people's feature values column by column (right marginals, broken dependencies).
    """
    lo = np.percentile(human, 1, axis=0)
    hi = np.percentile(human, 99, axis=0)
    span = hi - lo
    box = rng.uniform(
        lo - _REFERENCE_MARGIN * span, hi + _REFERENCE_MARGIN * span, (n // 2, human.shape[1])
    )
    mixed = np.column_stack([rng.choice(human[:, j], n - n // 2) for j in range(human.shape[1])])
    return np.vstack([box, mixed])


def fit_model(x: FloatArray, y: NDArray[np.int64], seed: int) -> Any:
    """Fit the calibrated random forest (Platt scaling from 5-fold out-of-fold scores)."""
    base = RandomForestClassifier(
        n_estimators=200, min_samples_leaf=2, random_state=seed, n_jobs=_JOBS
    )
    folds = StratifiedKFold(_CALIBRATION_FOLDS, shuffle=True, random_state=seed)
    # Platt scaling: onnxruntime reproduces it exactly, unlike isotonic steps in float32.
    # ensemble=False keeps one forest (fitted on all rows) in the exported file, not five.
    model = CalibratedClassifierCV(base, method="sigmoid", cv=folds, ensemble=False)
    return model.fit(x.astype(np.float32), y)


def predict(model: Any, x: FloatArray) -> FloatArray:
    """Return the fitted model's bot probability for each row."""
    return np.asarray(model.predict_proba(x.astype(np.float32)))[:, 1]


@dataclass
class _Data:
    x: FloatArray
    y: NDArray[np.int64]
    source: NDArray[np.str_]
    test: NDArray[np.bool_]


def _load(path: Path, cfg: BotTrainingConfig, log: Log) -> _Data:
    sessions: list[LabelledSession] = read_delbot(path)
    log(f"bot_detection: {len(sessions)} DELBOT sessions from {path}")
    test = np.array(
        [is_test(cfg.seed, s.source, s.session, test_fraction=cfg.test_fraction) for s in sessions]
    )
    trajectories = [s.trajectory for s in sessions]
    labels = [s.label for s in sessions]
    sources = [s.source for s in sessions]
    # A slower-sampled copy of each training person: devices differ in event rate.
    for s, held in zip(sessions, test, strict=True):
        if s.label == 0 and not held:
            trajectories.append(decimated(s.trajectory))
            labels.append(0)
            sources.append(s.source)
    n_real = len(sessions)
    test = np.r_[test, np.zeros(len(trajectories) - n_real, dtype=bool)]
    bots, families = synthetic_bots.generate_many(
        cfg.synthetic_per_family * len(synthetic_bots.FAMILIES), cfg.seed
    )
    trajectories += bots
    labels += [1] * len(bots)
    sources += [SYNTHETIC_SOURCE + f for f in families]
    test = np.r_[test, np.zeros(len(bots), dtype=bool)]
    log(f"bot_detection: features of {len(trajectories)} trajectories")
    return _Data(features_of(trajectories), np.array(labels), np.array(sources), test)


def _with_reference(
    x: FloatArray, y: NDArray[np.int64], n: int, seed: int
) -> tuple[FloatArray, NDArray[np.int64]]:
    ref = reference_samples(x[y == 0], n, np.random.default_rng(seed))
    return np.vstack([x, ref]), np.r_[y, np.ones(len(ref), dtype=np.int64)]


def _metrics(y: NDArray[np.int64], p: FloatArray) -> dict[str, float]:
    return {
        "roc_auc": roc_auc(y, p),
        "eer": equal_error_rate(y, p),
        "ece": expected_calibration_error(y, p),
        "sessions": float(y.size),
    }


def _held_out(data: _Data, cfg: BotTrainingConfig, report: BotTrainingReport, log: Log) -> None:
    """AUC on a family (or device) the model never saw: trained without it, tested on it."""
    train = ~data.test
    real_test = data.test
    for fam in sorted(set(data.source[data.y == 1])):
        synthetic = fam.startswith(SYNTHETIC_SOURCE)
        keep = train & (data.source != fam)
        x, y = _with_reference(data.x[keep], data.y[keep], cfg.reference_samples, cfg.seed)
        model = fit_model(x, y, cfg.seed)
        # Real families: their test sessions; synthetic ones: all of theirs (never fitted).
        fam_rows = (data.source == fam) & (True if synthetic else real_test)
        rows = fam_rows | (real_test & (data.y == 0))
        report.held_out_family_auc[fam] = roc_auc(data.y[rows], predict(model, data.x[rows]))
        log(f"bot_detection: held-out family {fam}: AUC {report.held_out_family_auc[fam]:.4f}")
    for dev in sorted(set(data.source[data.y == 0])):
        keep = train & (data.source != dev)
        x, y = _with_reference(data.x[keep], data.y[keep], cfg.reference_samples, cfg.seed)
        model = fit_model(x, y, cfg.seed)
        rows = real_test & ((data.source == dev) | (data.y == 1))
        rows &= ~np.char.startswith(data.source, SYNTHETIC_SOURCE)
        report.held_out_device_auc[dev] = roc_auc(data.y[rows], predict(model, data.x[rows]))
        log(f"bot_detection: held-out device {dev}: AUC {report.held_out_device_auc[dev]:.4f}")


def train_bot_detection(
    delbot_csv: Path, repository: Path, cfg: BotTrainingConfig, log: Log
) -> BotTrainingReport:
    """Train, evaluate and export bot_detection to `repository/bot_detection/1/model.onnx`."""
    started = time.monotonic()
    data = _load(delbot_csv, cfg, log)
    report = BotTrainingReport()
    real = ~np.char.startswith(data.source, SYNTHETIC_SOURCE)
    report.counts = {
        "train_trajectories_real": int((~data.test & real).sum()),
        "test_sessions": int(data.test.sum()),
        "synthetic_bots": int((~real).sum()),
        "reference_samples": cfg.reference_samples,
    }
    if cfg.held_out_evaluation:
        _held_out(data, cfg, report, log)
    x, y = _with_reference(data.x[~data.test], data.y[~data.test], cfg.reference_samples, cfg.seed)
    log(f"bot_detection: fitting on {len(y)} rows")
    model = fit_model(x, y, cfg.seed)
    p = predict(model, data.x[data.test])
    yt, st = data.y[data.test], data.source[data.test]
    report.test_metrics = _metrics(yt, p)
    for src in sorted(set(st)):
        rows = (st == src) | (yt != yt[st == src][0])
        m = _metrics(yt[rows], p[rows])
        m["sessions"] = float((st == src).sum())
        report.test_per_source[src] = m
    path = repository / MODEL_NAME / "1" / "model.onnx"
    export_classifier(
        model,
        BOT_FEATURE_NAMES,
        path,
        data.x[data.test],
        {"model": MODEL_NAME, "seed": str(cfg.seed), "positive_class": "bot"},
    )
    report.seconds = time.monotonic() - started
    log(f"bot_detection: test AUC {report.test_metrics['roc_auc']:.4f}, wrote {path}")
    return report
