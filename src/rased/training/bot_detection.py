"""bot_detection: a calibrated classifier of pointer trajectories, person (0) or bot (1).

Input: `rased.features.pointer.bot_features` (`BOT_FEATURE_NAMES`): how the pointer moves
and how regular its steps and intervals are, without the scale of the drawing or the
per-event kinematics a device's event delivery distorts.

Training data: DELBOT-Mouse sessions (seeded split by session; the test part is never
fitted), scripted-bot trajectories from `synthetic_bots`, generated SDK sessions from
`synthetic_sessions` (people and scripts filling a form: the task live traffic has, which
no circle drawing shows; from generator seeds no evaluation uses), windows of real people's
desktop work (`desktop_people`, the Balabit training sessions), and "reference" points
drawn around and between the people's feature values and labelled bot. The reference points
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
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.model_selection import StratifiedKFold

from rased.eval import generated_sessions
from rased.eval.generated_sessions import GeneratedBotReport
from rased.eval.metrics import (
    equal_error_rate,
    expected_calibration_error,
    has_both_classes,
    roc_auc,
)
from rased.features.pointer import BOT_FEATURE_NAMES, bot_features
from rased.features.trajectory import PointerAction, Trajectory
from rased.training import synthetic_bots, synthetic_sessions
from rased.training.datasets import LabelledSession, read_delbot
from rased.training.desktop_people import (
    EVALUATION_WINDOW,
    PeopleReport,
    PeopleWindows,
    format_people_report,
    people_report,
    people_windows,
)
from rased.training.onnx_export import export_classifier
from rased.training.split import is_test

MODEL_NAME = "bot_detection"
SYNTHETIC_SOURCE = "synthetic_bot_"
# Generated SDK sessions: owners and intruders (people, label 0) and scripts (label 1).
GENERATED_HUMAN = "generated_human"
GENERATED_BOT = "generated_bot"
GENERATED_SOURCES = (GENERATED_HUMAN, GENERATED_BOT)
DESKTOP_PEOPLE = "desktop_people"
# Sources the held-out evaluations always train on and never leave out or test.
_ALWAYS_FITTED = (*GENERATED_SOURCES, DESKTOP_PEOPLE)
# Desktop people whose sessions one held-out fit leaves out: a person never seen at all.
_UNSEEN_PEOPLE = 3
# The training population's generator seed is the training seed plus this: far from the
# evaluation seeds (generated_sessions.EVAL_SEED, session_scores' seed and seed + 1).
GENERATED_SEED_OFFSET = 1000
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
    # Generated SDK sessions to train on (0 users: none): accounts x sessions, bot share.
    generated_users: int = 100
    generated_sessions_per_user: int = 12
    generated_bot_rate: float = 0.4
    # Score the generated evaluation population (generated_sessions.EVAL_SEED) after training.
    generated_evaluation: bool = True
    # Windows drawn from the desktop people's training sessions (when a folder is given).
    desktop_people_windows: int = 3000
    # Their weight in the fit: at 1 they cost the unseen GAN bots more in validation.
    desktop_people_weight: float = 0.3

    @property
    def generated_seed(self) -> int:
        """Generator seed of the training population (never an evaluation seed)."""
        return self.seed + GENERATED_SEED_OFFSET


@dataclass
class BotTrainingReport:
    """What one training run measured (on sessions it never fitted)."""

    test_metrics: dict[str, float] = field(default_factory=dict)
    test_per_source: dict[str, dict[str, float]] = field(default_factory=dict)
    held_out_family_auc: dict[str, float] = field(default_factory=dict)
    held_out_device_auc: dict[str, float] = field(default_factory=dict)
    # Generated sessions of another population (generated_sessions.EVAL_SEED), never fitted.
    generated_test: GeneratedBotReport = field(default_factory=GeneratedBotReport)
    # Real people at desktop work: the test sessions' windows (never fitted), and those of
    # people the held-out fit never saw at all.
    desktop_people_test: PeopleReport = field(default_factory=PeopleReport)
    desktop_people_unseen: PeopleReport = field(default_factory=PeopleReport)
    desktop_people_unseen_users: list[str] = field(default_factory=list)
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


def fit_model(
    x: FloatArray, y: NDArray[np.int64], seed: int, weight: FloatArray | None = None
) -> Any:
    """Fit the calibrated extremely randomized trees (Platt scaling, 5-fold out-of-fold).

    Extremely randomized trees (Geurts, Ernst & Wehenkel 2006) draw each split's threshold
    at random instead of at the best cut, so the boundary between people and bots is
    smoother and less tight around the bots seen in training; on the validation protocol
    that carried it much further to bot families it never saw than a random forest's
    best cuts did (model card).
    """
    base = ExtraTreesClassifier(
        n_estimators=200, min_samples_leaf=1, random_state=seed, n_jobs=_JOBS
    )
    folds = StratifiedKFold(_CALIBRATION_FOLDS, shuffle=True, random_state=seed)
    # Platt scaling: onnxruntime reproduces it exactly, unlike isotonic steps in float32.
    # ensemble=False keeps one ensemble (fitted on all rows) in the exported file, not five.
    model = CalibratedClassifierCV(base, method="sigmoid", cv=folds, ensemble=False)
    return model.fit(x.astype(np.float32), y, sample_weight=weight)


def predict(model: Any, x: FloatArray) -> FloatArray:
    """Return the fitted model's bot probability for each row."""
    return np.asarray(model.predict_proba(x.astype(np.float32)))[:, 1]


@dataclass
class _Data:
    x: FloatArray
    y: NDArray[np.int64]
    source: NDArray[np.str_]
    test: NDArray[np.bool_]
    # Whose session a desktop person's window is ("" for every other row).
    user: NDArray[np.str_]


def _load(path: Path, cfg: BotTrainingConfig, people: PeopleWindows | None, log: Log) -> _Data:
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
    x = features_of(trajectories)
    generated = _generated(cfg, log)
    x = np.vstack([x, generated.x])
    labels += generated.is_bot.tolist()
    sources += [GENERATED_BOT if bot else GENERATED_HUMAN for bot in generated.is_bot]
    test = np.r_[test, np.zeros(generated.label.size, dtype=bool)]
    user = [""] * len(labels)
    if people is not None:
        x = np.vstack([x, people.x])
        labels += [0] * len(people)
        sources += [DESKTOP_PEOPLE] * len(people)
        user += people.user.tolist()
        test = np.r_[test, np.zeros(len(people), dtype=bool)]
    return _Data(x, np.array(labels), np.array(sources), test, np.array(user))


def _generated(cfg: BotTrainingConfig, log: Log) -> generated_sessions.PointerRows:
    """The generated training population's sessions with enough pointer events to score."""
    sessions = synthetic_sessions.generate_sessions(
        cfg.generated_users,
        cfg.generated_sessions_per_user,
        cfg.generated_seed,
        bot_rate=cfg.generated_bot_rate,
    )
    rows = generated_sessions.pointer_rows(sessions)
    log(
        f"bot_detection: {rows.label.size} of {len(sessions)} generated sessions (seed "
        f"{cfg.generated_seed}) have pointer events: {int(rows.is_bot.sum())} bot"
    )
    return rows


def _fit(data: _Data, keep: NDArray[np.bool_], cfg: BotTrainingConfig) -> Any:
    """Fit on the `keep` rows plus reference points around their people."""
    x, y = data.x[keep], data.y[keep]
    ref = reference_samples(x[y == 0], cfg.reference_samples, np.random.default_rng(cfg.seed))
    weight = np.where(data.source[keep] == DESKTOP_PEOPLE, cfg.desktop_people_weight, 1.0)
    return fit_model(
        np.vstack([x, ref]),
        np.r_[y, np.ones(len(ref), dtype=np.int64)],
        cfg.seed,
        np.r_[weight, np.ones(len(ref))],
    )


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
    # The generated sessions and desktop people are in every fit, never left out or tested.
    for fam in sorted(set(data.source[data.y == 1]) - set(_ALWAYS_FITTED)):
        synthetic = fam.startswith(SYNTHETIC_SOURCE)
        # Real families: their test sessions; synthetic ones: all of theirs (never fitted).
        fam_rows = (data.source == fam) & (True if synthetic else real_test)
        rows = fam_rows | (real_test & (data.y == 0))
        if not has_both_classes(data.y[rows]):
            log(f"bot_detection: held-out family {fam}: no test sessions, skipped")
            continue
        keep = train & (data.source != fam)
        model = _fit(data, keep, cfg)
        report.held_out_family_auc[fam] = roc_auc(data.y[rows], predict(model, data.x[rows]))
        log(f"bot_detection: held-out family {fam}: AUC {report.held_out_family_auc[fam]:.4f}")
    for dev in sorted(set(data.source[data.y == 0]) - set(_ALWAYS_FITTED)):
        rows = real_test & ((data.source == dev) | (data.y == 1))
        rows &= ~np.char.startswith(data.source, SYNTHETIC_SOURCE)
        if not has_both_classes(data.y[rows]):
            log(f"bot_detection: held-out device {dev}: no test sessions, skipped")
            continue
        keep = train & (data.source != dev)
        model = _fit(data, keep, cfg)
        report.held_out_device_auc[dev] = roc_auc(data.y[rows], predict(model, data.x[rows]))
        log(f"bot_detection: held-out device {dev}: AUC {report.held_out_device_auc[dev]:.4f}")


def _unseen_people(
    data: _Data, people_test: PeopleWindows, cfg: BotTrainingConfig, report: BotTrainingReport
) -> None:
    """Score the test windows of desktop people a fit never saw a session of."""
    users = sorted(set(data.user[data.source == DESKTOP_PEOPLE]))[:_UNSEEN_PEOPLE]
    keep = ~data.test & ~np.isin(data.user, users)
    model = _fit(data, keep, cfg)
    unseen = people_test.of_users(users)
    report.desktop_people_unseen = people_report(predict(model, unseen.x))
    report.desktop_people_unseen_users = users


def train_bot_detection(
    delbot_csv: Path,
    repository: Path,
    cfg: BotTrainingConfig,
    log: Log,
    desktop_people: tuple[Path, Path] | None = None,
) -> BotTrainingReport:
    """Train, evaluate and export bot_detection to `repository/bot_detection/1/model.onnx`.

    `desktop_people`: the folders of people's training and test sessions in the Balabit
    layout; windows of the first are trained on, those of the second only scored.

    Raises:
        ValueError: the seed's generated training population is the evaluation population.
        DatasetError: a data file or folder is missing or not in its format.
    """
    if cfg.generated_seed == generated_sessions.EVAL_SEED:
        raise ValueError(f"seed {cfg.seed}: its generated population is the evaluation one")
    started = time.monotonic()
    people = people_test = None
    if desktop_people is not None:
        people = people_windows(
            desktop_people[0], log, sample=cfg.desktop_people_windows, seed=cfg.seed
        )
        people_test = people_windows(desktop_people[1], log, sizes=(EVALUATION_WINDOW,))
    data = _load(delbot_csv, cfg, people, log)
    report = BotTrainingReport()
    synthetic = np.char.startswith(data.source, SYNTHETIC_SOURCE)
    generated = np.isin(data.source, GENERATED_SOURCES)
    report.counts = {
        "train_trajectories_real": int((~data.test & ~synthetic & ~generated).sum()),
        "test_sessions": int(data.test.sum()),
        "synthetic_bots": int(synthetic.sum()),
        "generated_human": int((data.source == GENERATED_HUMAN).sum()),
        "generated_bot": int((data.source == GENERATED_BOT).sum()),
        "generated_seed": cfg.generated_seed,
        "reference_samples": cfg.reference_samples,
        "desktop_people": int((data.source == DESKTOP_PEOPLE).sum()),
    }
    if cfg.held_out_evaluation:
        _held_out(data, cfg, report, log)
        if people_test is not None:
            _unseen_people(data, people_test, cfg, report)
            who = ", ".join(report.desktop_people_unseen_users)
            summary = format_people_report(report.desktop_people_unseen)
            log(f"bot_detection: desktop people never seen ({who}): {summary}")
    log(f"bot_detection: fitting on {int((~data.test).sum()) + cfg.reference_samples} rows")
    model = _fit(data, ~data.test, cfg)
    p = predict(model, data.x[data.test])
    yt, st = data.y[data.test], data.source[data.test]
    report.test_metrics = _metrics(yt, p)
    for src in sorted(set(st)):
        rows = (st == src) | (yt != yt[st == src][0])
        m = _metrics(yt[rows], p[rows])
        m["sessions"] = float((st == src).sum())
        report.test_per_source[src] = m
    if cfg.generated_evaluation:
        log(f"bot_detection: scoring generated sessions (seed {generated_sessions.EVAL_SEED})")
        rows = generated_sessions.evaluation_rows()
        report.generated_test = generated_sessions.score_report(rows, predict(model, rows.x))
        log(
            "bot_detection: generated test AUC owner vs bot "
            f"{report.generated_test.roc_auc_owner_vs_bot}"
        )
    if people_test is not None:
        report.desktop_people_test = people_report(predict(model, people_test.x))
        summary = format_people_report(report.desktop_people_test)
        log(f"bot_detection: desktop people's test windows: {summary}")
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
