"""Keystroke features shared by training, evaluation and the scoring worker.

Two concerns, both pure numpy: the hold and flight times of a stream of key events (what
the scoring worker reads from an SDK's batches), and detectors that compare a typing
sample with a user's enrolled samples: the scaled Manhattan detector (Killourhy & Maxion,
"Comparing anomaly-detection algorithms for keystroke dynamics", DSN 2009: the best of 14
detectors on their benchmark, equal-error rate 0.096), plain or fitted on filtered
enrolment, and a nearest neighbour under Manhattan distance after whitening (Zhong, Deng
& Jain, "Keystroke dynamics for user authentication", CVPR Workshops 2012).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rased.features.trajectory import FloatArray
from rased.v1 import events_pb2

# A feature that never varied in enrolment would divide by zero; floor its scale (seconds
# or milliseconds alike: far below any timer's resolution).
_MIN_SCALE = 1e-6
# The rule of Killourhy & Maxion's filtered Manhattan detector: a value this many standard
# deviations from the enrolment mean is an outlier (a hesitation), not the user's rhythm.
OUTLIER_SD = 3.0
# Hold, down-down and up-down times are linearly dependent (UD = DD - H), so the
# enrolment covariance is singular: its eigenvalues are floored at this share of the
# largest before whitening.
EIGEN_FLOOR = 1e-3


class TypingTemplate(Protocol):
    """A user's fitted typing template: scores samples, higher = less like the user."""

    def score(self, samples: FloatArray) -> FloatArray:
        """Return the anomaly score of each row of `samples`."""
        ...


def _enrolment(samples: FloatArray) -> FloatArray:
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError("enrolment needs a 2-D array of at least one sample")
    return x


def _checked(samples: FloatArray, features: int) -> FloatArray:
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    if x.shape[1] != features:
        raise ValueError(f"samples have {x.shape[1]} features, the template {features}")
    return x


def hold_and_flight_times(events: Iterable[events_pb2.Event]) -> tuple[FloatArray, FloatArray]:
    """Return hold times (down to up of a key) and flight times (up to the next down) in ms.

    `events` must be in time order; events other than keystrokes are skipped. A down whose
    up never comes, or an up without its down, counts for nothing.
    """
    down_at: dict[int, int] = {}
    holds: list[float] = []
    flights: list[float] = []
    last_up: int | None = None
    for event in events:
        if event.WhichOneof("kind") != "keystroke":
            continue
        key = event.keystroke
        if key.action == events_pb2.KEY_ACTION_DOWN:
            if last_up is not None and event.timestamp_ms >= last_up:
                flights.append(float(event.timestamp_ms - last_up))
            down_at[key.key_id] = event.timestamp_ms
        elif key.action == events_pb2.KEY_ACTION_UP and key.key_id in down_at:
            holds.append(float(event.timestamp_ms - down_at.pop(key.key_id)))
            last_up = event.timestamp_ms
    return np.asarray(holds, dtype=np.float64), np.asarray(flights, dtype=np.float64)


@dataclass(frozen=True)
class ScaledManhattan:
    """A user's typing template: per-feature mean and mean absolute deviation.

    The anomaly score of a sample is sum(|x - mean| / mad): 0 for the template itself,
    growing as the sample's timings leave the user's usual rhythm. Scaling by the mean
    absolute deviation (not the standard deviation) keeps one erratic keystroke in
    enrolment from widening the template much.
    """

    mean: FloatArray
    mad: FloatArray

    @staticmethod
    def fit(samples: FloatArray) -> ScaledManhattan:
        """Return the template of enrolment samples (one row per repetition).

        Raises:
            ValueError: `samples` is not a 2-D array of at least one row.
        """
        x = _enrolment(samples)
        mean = x.mean(axis=0)
        mad = np.maximum(np.abs(x - mean).mean(axis=0), _MIN_SCALE)
        return ScaledManhattan(mean, mad)

    @staticmethod
    def fit_filtered(samples: FloatArray, limit_sd: float = OUTLIER_SD) -> ScaledManhattan:
        """Return the template of the enrolment samples without the outlying repetitions.

        A repetition with any feature more than `limit_sd` standard deviations from that
        feature's mean is left out, then the rest are fitted as `fit` does. A hesitation
        inflates the mean absolute deviation of its feature for every later comparison;
        leaving the repetition out keeps the template to the user's usual rhythm.

        Raises:
            ValueError: `samples` is not a 2-D array of at least one row.
        """
        x = _enrolment(samples)
        sd = np.maximum(x.std(axis=0), _MIN_SCALE)
        usual = (np.abs(x - x.mean(axis=0)) <= limit_sd * sd).all(axis=1)
        # An enrolment so erratic that no repetition passes keeps them all: a wide
        # template is better than none.
        return ScaledManhattan.fit(x[usual] if usual.any() else x)

    def score(self, samples: FloatArray) -> FloatArray:
        """Return the anomaly score of each row of `samples` (higher = less like the user)."""
        x = _checked(samples, self.mean.size)
        scores: FloatArray = (np.abs(x - self.mean) / self.mad).sum(axis=1)
        return scores


@dataclass(frozen=True)
class WhitenedNearestNeighbour:
    """A user's enrolled samples, whitened by their own covariance.

    The anomaly score of a sample is the Manhattan distance, after the same whitening, to
    the nearest enrolled sample. Whitening undoes the timings' different scales and their
    correlations (a slow typist is slow on every key; DD is H plus UD), so no one feature
    counts several times; the nearest neighbour lets a user have more than one usual
    rhythm, which a single mean cannot.
    """

    whitening: FloatArray  # [F, F], symmetric
    enrolled: FloatArray  # [N, F], whitened

    @staticmethod
    def fit(samples: FloatArray) -> WhitenedNearestNeighbour:
        """Return the template of enrolment samples (one row per repetition).

        Raises:
            ValueError: `samples` is not a 2-D array of at least two rows.
        """
        x = _enrolment(samples)
        if x.shape[0] < 2:
            raise ValueError("whitening needs at least two enrolment samples")
        values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
        floor = max(float(values.max()) * EIGEN_FLOOR, _MIN_SCALE**2)
        whitening = vectors @ np.diag(np.maximum(values, floor) ** -0.5) @ vectors.T
        return WhitenedNearestNeighbour(whitening, x @ whitening)

    def score(self, samples: FloatArray) -> FloatArray:
        """Return the anomaly score of each row of `samples` (higher = less like the user)."""
        x = _checked(samples, self.whitening.shape[0]) @ self.whitening
        scores: FloatArray = np.array(
            [float(np.abs(self.enrolled - row).sum(axis=1).min()) for row in x]
        )
        return scores
