"""ROC AUC, equal-error rate and calibration error on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from rased.eval.metrics import equal_error_rate, expected_calibration_error, roc_auc


def test_perfect_reversed_and_tied_scores() -> None:
    y = [0, 0, 1, 1]
    assert roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert equal_error_rate(y, [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert equal_error_rate(y, [0.9, 0.8, 0.2, 0.1]) == 1.0


def test_auc_counts_pairs() -> None:
    # Pairs (pos, neg): 0.4>0.3 yes, 0.4>0.5 no, 0.6>0.3 yes, 0.6>0.5 yes -> 3/4.
    assert roc_auc([0, 1, 0, 1], [0.3, 0.4, 0.5, 0.6]) == 0.75


def test_equal_error_rate_where_rates_cross() -> None:
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(0, 1, 20000), rng.normal(2, 1, 20000)
    y = np.r_[np.zeros(neg.size), np.ones(pos.size)]
    # Two unit Gaussians 2 apart cross at 1: EER = P(N(0,1) > 1) = 0.1587.
    assert equal_error_rate(y, np.r_[neg, pos]) == pytest.approx(0.1587, abs=0.01)


def test_calibration_error() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 50000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01
    assert expected_calibration_error([0, 0, 1, 1], [1.0, 1.0, 0.0, 0.0]) == 1.0


def test_one_class_is_an_error() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="labels"):
        roc_auc([0, 2], [0.1, 0.2])
