"""Real people's pointer at desktop work (Balabit format), cut into windows for bot_detection.

Every DELBOT person draws circles; the Balabit sessions are ten people at their daily work
on a remote desktop: pointing, clicking, dragging, pausing. bot_detection trains on windows
of the training sessions, labelled person, and is checked on the windows of the test
sessions. Those are people only (the owners and the intruders of the takeover labels), so
what they measure is how often a real person at work is taken for a bot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rased.features.pointer import bot_features
from rased.features.trajectory import Trajectory
from rased.scoring.rules import RISK_THRESHOLDS
from rased.training.datasets import DatasetError, iter_balabit_dir, read_balabit_session
from rased.v1 import scoring_pb2

Log = Callable[[str], None]
FloatArray = NDArray[np.float64]

# Pointer events per window: a short form, a long one, a long session. The scoring worker
# scores a transaction's whole pointer stream, whose length varies this much.
WINDOW_SIZES = (100, 200, 400)
EVALUATION_WINDOW = 200
_PROGRESS_EVERY = 50
_LEVELS = {level: threshold for threshold, level in RISK_THRESHOLDS}
_MEDIUM = _LEVELS[scoring_pb2.RISK_LEVEL_MEDIUM]
_HIGH = _LEVELS[scoring_pb2.RISK_LEVEL_HIGH]


@dataclass(frozen=True)
class PeopleWindows:
    """Bot features of windows of people's sessions, with whose session and how long."""

    x: FloatArray  # [windows, len(BOT_FEATURE_NAMES)]
    user: NDArray[np.str_]
    size: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.user.size)

    def of_users(self, users: Sequence[str], keep: bool = True) -> PeopleWindows:
        """Return the windows of `users` (or, with keep=False, of everyone else)."""
        rows = np.isin(self.user, list(users)) == keep
        return PeopleWindows(self.x[rows], self.user[rows], self.size[rows])


def people_windows(
    root: Path,
    log: Log,
    sizes: Sequence[int] = WINDOW_SIZES,
    sample: int | None = None,
    seed: int = 0,
) -> PeopleWindows:
    """Return the windows of every session under `root/<user>/` (Balabit layout).

    Each session is cut into consecutive windows of each size in `sizes` (a shorter tail
    is left out). With `sample`, that many windows are drawn at random (seeded) before the
    features are computed.

    Raises:
        DatasetError: `root` holds no sessions in the Balabit format, or none is long
            enough for one window.
    """
    cut: list[tuple[str, int, Trajectory]] = []
    paths = list(iter_balabit_dir(root))
    for i, (user, _, path) in enumerate(paths, start=1):
        trajectory = read_balabit_session(path)
        for size in sizes:
            cut += [(user, size, w) for w in trajectory.windows(size, size)]
        if i % _PROGRESS_EVERY == 0 or i == len(paths):
            log(f"desktop people: read {i}/{len(paths)} sessions from {root}")
    if not cut:
        raise DatasetError(
            f"{root}: no session has {min(sizes)} pointer events or more (one window)"
        )
    if sample is not None and sample < len(cut):
        chosen = np.sort(np.random.default_rng(seed).choice(len(cut), sample, replace=False))
        cut = [cut[int(i)] for i in chosen]
    x = np.vstack([bot_features(w) for _, _, w in cut])
    log(f"desktop people: {len(cut)} windows of {', '.join(map(str, sizes))} events")
    return PeopleWindows(
        x=x,
        user=np.array([u for u, _, _ in cut]),
        size=np.array([s for _, s, _ in cut], dtype=np.int64),
    )


@dataclass
class PeopleReport:
    """How bot_detection scores people's windows: its false alarms on real people."""

    windows: int = 0
    median: float | None = None
    p90: float | None = None
    medium_or_more: float | None = None  # share of windows the risk level calls MEDIUM+
    high_or_more: float | None = None  # share of windows the risk level calls HIGH+


def people_report(p_bot: FloatArray) -> PeopleReport:
    """Summarise P(bot) of people's windows against the worker's risk thresholds."""
    if not p_bot.size:
        return PeopleReport()
    return PeopleReport(
        windows=int(p_bot.size),
        median=float(np.median(p_bot)),
        p90=float(np.percentile(p_bot, 90)),
        medium_or_more=float(np.mean(p_bot >= _MEDIUM)),
        high_or_more=float(np.mean(p_bot >= _HIGH)),
    )


def format_people_report(report: PeopleReport) -> str:
    """One line a fraud analyst reads: windows, median and 90th percentile, false alarms."""
    median, p90, medium, high = (
        report.median,
        report.p90,
        report.medium_or_more,
        report.high_or_more,
    )
    if median is None or p90 is None or medium is None or high is None:
        return "no windows scored"
    return (
        f"{report.windows} windows: median P(bot) {median:.3f}, 90th percentile {p90:.3f}; "
        f"MEDIUM or more (>= {_MEDIUM:.2f}) {100 * medium:.1f}%, "
        f"HIGH or more (>= {_HIGH:.2f}) {100 * high:.1f}%"
    )
