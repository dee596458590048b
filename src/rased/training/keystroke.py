"""Keystroke-dynamics evaluation in the CMU benchmark's format and protocol.

Killourhy & Maxion, "Comparing anomaly-detection algorithms for keystroke dynamics"
(DSN 2009): 51 subjects typed ".tie5Roanl" 400 times in eight sessions. Per subject, a
detector is trained on the first 200 repetitions; the last 200 are the genuine test and
the first 5 repetitions of every other subject the impostors. The paper's best detector
(scaled Manhattan, `rased.features.keystroke.ScaledManhattan`) reaches a mean equal-error
rate of 0.096 (sd 0.069).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rased.eval.metrics import equal_error_rate
from rased.features.keystroke import ScaledManhattan, TypingTemplate, WhitenedNearestNeighbour
from rased.features.trajectory import FloatArray
from rased.training.datasets import DatasetError, open_text

CMU_ID_COLUMNS = ("subject", "sessionIndex", "rep")
TIMING_PREFIXES = ("H.", "DD.", "UD.")
PUBLISHED_EER = 0.096
PUBLISHED_SD = 0.069
TRAIN_REPS = 200
TEST_REPS = 200
IMPOSTOR_REPS = 5
_PROGRESS_EVERY = 10

Log = Callable[[str], None]
Fit = Callable[[FloatArray], TypingTemplate]

# Every detector `rased-eval keystroke` compares, by the name it prints.
DETECTORS: dict[str, Fit] = {
    "scaled Manhattan": ScaledManhattan.fit,
    "scaled Manhattan, filtered": ScaledManhattan.fit_filtered,
    "whitened nearest neighbour": WhitenedNearestNeighbour.fit,
}


@dataclass(frozen=True)
class KeystrokeData:
    """Every subject's repetitions in (sessionIndex, rep) order, as timing rows (seconds)."""

    features: tuple[str, ...]
    subjects: dict[str, FloatArray]


@dataclass(frozen=True)
class KeystrokeReport:
    """Per-subject equal-error rates of one detector and their summary."""

    features: int
    eers: dict[str, float]

    @property
    def mean(self) -> float:
        """Return the mean equal-error rate over subjects."""
        return float(np.mean(list(self.eers.values())))

    @property
    def std(self) -> float:
        """Return the standard deviation of the subjects' equal-error rates (ddof 1)."""
        values = list(self.eers.values())
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    @property
    def best(self) -> tuple[str, float]:
        """Return the subject with the lowest equal-error rate, and that rate."""
        subject = min(self.eers, key=lambda s: self.eers[s])
        return subject, self.eers[subject]

    @property
    def worst(self) -> tuple[str, float]:
        """Return the subject with the highest equal-error rate, and that rate."""
        subject = max(self.eers, key=lambda s: self.eers[s])
        return subject, self.eers[subject]


def _number(path: Path, line: int, column: str, text: str, kind: type[float] | type[int]) -> float:
    """Return `text` as a finite number, or raise naming the line and column."""
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number (seconds)"
        raise DatasetError(f"{path}:{line}: {column} is {text!r}, not {what}") from None
    if not math.isfinite(value):
        raise DatasetError(f"{path}:{line}: {column} is {text!r}, not a finite number")
    return value


def read_cmu(path: Path) -> KeystrokeData:
    """Read a CMU-format CSV (plain or gzip); keep the H.*, DD.* and UD.* columns.

    Raises:
        DatasetError: the file is missing or unreadable, a column is missing, or a value
            is not a number.
    """
    keyed: dict[str, list[tuple[int, int, list[float]]]] = {}
    try:
        with open_text(path) as text:
            reader = csv.reader(text)
            header = next(reader, None)
            expected = f"{', '.join(CMU_ID_COLUMNS)}, then H.*, DD.*, UD.* timings in seconds"
            if header is None:
                raise DatasetError(f"{path}: empty file; expected the columns {expected}")
            names = [h.strip() for h in header]
            missing = [c for c in CMU_ID_COLUMNS if c not in names]
            timing = [i for i, n in enumerate(names) if n.startswith(TIMING_PREFIXES)]
            if missing or not timing:
                absent = ", ".join(missing or ["H.*/DD.*/UD.*"])
                raise DatasetError(f"{path}: missing column(s) {absent}; expected {expected}")
            subject_at, session_at, rep_at = (names.index(c) for c in CMU_ID_COLUMNS)
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) < len(names):
                    raise DatasetError(
                        f"{path}:{line}: {len(row)} values, the header has {len(names)} columns"
                    )
                session = int(_number(path, line, "sessionIndex", row[session_at], int))
                rep = int(_number(path, line, "rep", row[rep_at], int))
                values = [_number(path, line, names[i], row[i], float) for i in timing]
                keyed.setdefault(row[subject_at].strip(), []).append((session, rep, values))
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from None
    if not keyed:
        raise DatasetError(f"{path}: no repetitions after the header")
    subjects = {}
    for subject, reps in keyed.items():
        # The protocol's "first" and "last" are in typing order, whatever the file's order.
        reps.sort(key=lambda r: (r[0], r[1]))
        subjects[subject] = np.asarray([r[2] for r in reps], dtype=np.float64)
    return KeystrokeData(tuple(names[i] for i in timing), subjects)


def check_protocol(
    data: KeystrokeData,
    train_reps: int = TRAIN_REPS,
    test_reps: int = TEST_REPS,
    impostor_reps: int = IMPOSTOR_REPS,
) -> None:
    """Raise DatasetError unless every subject can be trained and tested under the protocol."""
    if min(train_reps, test_reps, impostor_reps) < 1:
        raise DatasetError(
            f"the protocol needs at least one repetition each to train, test and impersonate "
            f"(got {train_reps}, {test_reps} and {impostor_reps})"
        )
    if len(data.subjects) < 2:
        raise DatasetError(
            f"{len(data.subjects)} subject; need at least two (impostors are the other subjects)"
        )
    needed = max(train_reps + test_reps, impostor_reps)
    short = {s: r.shape[0] for s, r in data.subjects.items() if r.shape[0] < needed}
    if short:
        listed = ", ".join(f"{s} has {n}" for s, n in list(short.items())[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise DatasetError(
            f"too few repetitions: every subject needs at least {needed} ({train_reps} to "
            f"train, {test_reps} to test, {impostor_reps} to impersonate the others); "
            f"{listed}{more}"
        )


def evaluate_keystroke(
    data: KeystrokeData,
    log: Log,
    fit: Fit = ScaledManhattan.fit,
    train_reps: int = TRAIN_REPS,
    test_reps: int = TEST_REPS,
    impostor_reps: int = IMPOSTOR_REPS,
) -> KeystrokeReport:
    """Return each subject's equal-error rate under the benchmark's protocol.

    Raises:
        DatasetError: fewer than two subjects, or a subject with too few repetitions.
    """
    check_protocol(data, train_reps, test_reps, impostor_reps)
    eers: dict[str, float] = {}
    subjects = list(data.subjects)
    for n, subject in enumerate(subjects, start=1):
        reps = data.subjects[subject]
        template = fit(reps[:train_reps])
        genuine = template.score(reps[-test_reps:])
        impostors = template.score(
            np.vstack([data.subjects[o][:impostor_reps] for o in subjects if o != subject])
        )
        # Class 1 = impostor: a higher anomaly score should flag it.
        labels = np.r_[np.zeros(genuine.size), np.ones(impostors.size)]
        eers[subject] = equal_error_rate(labels, np.r_[genuine, impostors])
        if n % _PROGRESS_EVERY == 0 or n == len(subjects):
            log(f"scored {n}/{len(subjects)} subjects")
    return KeystrokeReport(len(data.features), eers)
