"""Account takeover from mouse dynamics: per-user profiles built from training sessions only.

Each session is cut into windows of consecutive pointer events; each window gets the
shared pointer features. A user's profile is a classifier of that user's windows against
the other users' training windows (the other users stand in for "someone else", as in
Antal & Egyed-Zsigmond, arXiv:1810.04668). A test session claimed to be a user scores
the mean, over its windows, of the probability that someone else moved the mouse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestClassifier

from rased.eval.metrics import equal_error_rate, roc_auc
from rased.features.pointer import N_POINTER_FEATURES, pointer_features
from rased.features.trajectory import Trajectory
from rased.training.datasets import (
    DatasetError,
    iter_balabit_dir,
    read_balabit_labels,
    read_balabit_session,
)

Log = Callable[[str], None]
FloatArray = NDArray[np.float64]

WINDOW_EVENTS = 100
# A user needs this many training windows for a profile.
_MIN_WINDOWS = 5
_JOBS = 2


def window_features(trajectory: Trajectory, size: int = WINDOW_EVENTS) -> FloatArray:
    """Return the pointer features of each window of `size` events, one row per window."""
    windows = trajectory.windows(size)
    if not windows:
        return np.zeros((0, N_POINTER_FEATURES))
    return np.vstack([pointer_features(w) for w in windows])


@dataclass
class TakeoverProfiles:
    """One classifier per user: its own windows (0) against the other users' windows (1)."""

    seed: int = 42
    trees: int = 150
    models: dict[str, Any] = field(default_factory=dict)

    def fit(self, windows: dict[str, FloatArray], log: Log) -> TakeoverProfiles:
        """Fit a profile for every user with enough windows.

        Raises:
            DatasetError: fewer than two users have enough windows.
        """
        users = sorted(u for u, w in windows.items() if len(w) >= _MIN_WINDOWS)
        if len(users) < 2:
            raise DatasetError("takeover profiles need training sessions of at least two users")
        for i, user in enumerate(users, start=1):
            own = windows[user]
            others = np.vstack([windows[u] for u in users if u != user])
            x = np.vstack([own, others])
            y = np.r_[np.zeros(len(own)), np.ones(len(others))].astype(np.int64)
            model = RandomForestClassifier(
                n_estimators=self.trees,
                min_samples_leaf=2,
                class_weight="balanced",
                random_state=self.seed,
                n_jobs=_JOBS,
            )
            self.models[user] = model.fit(x, y)
            log(f"takeover: profile {i}/{len(users)} ({user}: {len(own)} windows)")
        return self

    def score(self, user: str, windows: FloatArray) -> float:
        """Return how unlike the user a session's windows are, in [0, 1] (NaN: no profile)."""
        model = self.models.get(user)
        if model is None or not len(windows):
            return float("nan")
        return float(np.asarray(model.predict_proba(windows))[:, 1].mean())


@dataclass
class TakeoverReport:
    """Session-level results of a takeover evaluation."""

    roc_auc: float
    eer: float
    sessions: int
    illegal: int
    skipped: list[str]
    seconds: float


def _read_windows(
    items: Iterable[tuple[str, str, Path]], log: Log, what: str
) -> list[tuple[str, str, FloatArray]]:
    rows = list(items)
    out = []
    for i, (user, session, path) in enumerate(rows, start=1):
        out.append((user, session, window_features(read_balabit_session(path))))
        if i % 25 == 0 or i == len(rows):
            log(f"takeover: read {i}/{len(rows)} {what} sessions")
    return out


def evaluate_takeover(
    train_dir: Path, test_dir: Path, labels_path: Path, log: Log, seed: int = 42
) -> TakeoverReport:
    """Build profiles from `train_dir`, score the labelled sessions of `test_dir`.

    Raises:
        DatasetError: a folder or the labels file is missing or malformed, or no labelled
            test session has both classes.
    """
    started = time.monotonic()
    labels = read_balabit_labels(labels_path)
    test_items = [item for item in iter_balabit_dir(test_dir) if item[1] in labels]
    if not test_items:
        raise DatasetError(f"{labels_path}: labels none of the sessions under {test_dir}")
    train = _read_windows(iter_balabit_dir(train_dir), log, "training")
    per_user: dict[str, list[FloatArray]] = {}
    for user, _, w in train:
        per_user.setdefault(user, []).append(w)
    profiles = TakeoverProfiles(seed=seed).fit(
        {u: np.vstack(ws) for u, ws in per_user.items()}, log
    )
    scores, truth, skipped = [], [], []
    for user, session, w in _read_windows(test_items, log, "test"):
        s = profiles.score(user, w)
        if np.isnan(s):
            skipped.append(f"{user}/{session}")
            continue
        scores.append(s)
        truth.append(labels[session])
    y = np.array(truth)
    if not ((y == 0).any() and (y == 1).any()):
        raise DatasetError("the scored test sessions are all legal or all illegal: no AUC")
    return TakeoverReport(
        roc_auc=roc_auc(y, scores),
        eer=equal_error_rate(y, scores),
        sessions=int(y.size),
        illegal=int(y.sum()),
        skipped=skipped,
        seconds=time.monotonic() - started,
    )
