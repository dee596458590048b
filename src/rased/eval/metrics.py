"""Metrics of a score against binary labels: ROC AUC, equal-error rate, calibration error."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

_ECE_BINS = 10


def _check(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.isin(y, [0, 1]).all():
        raise ValueError("labels must be 0 or 1")
    return y, s


def has_both_classes(labels: ArrayLike) -> bool:
    """Return whether `labels` holds both 0 and 1 (ROC AUC and EER need both)."""
    y = np.asarray(labels).ravel()
    return bool((y == 0).any() and (y == 1).any())


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Return the area under the ROC curve (ties count half), i.e. P(score+ > score-).

    Raises:
        ValueError: the labels hold only one class.
    """
    y, s = _check(labels, scores)
    if not has_both_classes(y):
        raise ValueError("ROC AUC needs both classes")
    # Average ranks of tied scores (Mann-Whitney U).
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], s.size]
    for lo, hi in zip(starts, ends, strict=True):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2.0
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def equal_error_rate(labels: ArrayLike, scores: ArrayLike) -> float:
    """Return the error rate where false accepts equal false rejects (higher score = class 1).

    Raises:
        ValueError: the labels hold only one class.
    """
    y, s = _check(labels, scores)
    if not has_both_classes(y):
        raise ValueError("the equal-error rate needs both classes")
    thresholds = np.unique(s)
    pos, neg = s[y == 1], s[y == 0]
    # Flag as class 1 when score >= threshold; add a threshold above all to flag nothing.
    thresholds = np.r_[thresholds, np.inf]
    frr = np.searchsorted(np.sort(pos), thresholds, side="left") / pos.size
    far = 1.0 - np.searchsorted(np.sort(neg), thresholds, side="left") / neg.size
    i = int(np.argmin(np.abs(far - frr)))
    # Between two thresholds the rates cross: take the midpoint of the closest pair.
    return float((far[i] + frr[i]) / 2)


def expected_calibration_error(labels: ArrayLike, probabilities: ArrayLike) -> float:
    """Return the expected calibration error over 10 equal-width probability bins."""
    y, p = _check(labels, probabilities)
    if not y.size:
        raise ValueError("no scores")
    bins = np.minimum((np.clip(p, 0.0, 1.0) * _ECE_BINS).astype(int), _ECE_BINS - 1)
    ece = 0.0
    for b in range(_ECE_BINS):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(float(p[in_bin].mean()) - float(y[in_bin].mean()))
    return float(ece)
