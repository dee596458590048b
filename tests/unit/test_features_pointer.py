"""Pointer features on small synthetic trajectories whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from rased.features.pointer import (
    BOT_FEATURE_NAMES,
    N_BOT_FEATURES,
    N_POINTER_FEATURES,
    POINTER_FEATURE_NAMES,
    REGULARITY_FEATURE_NAMES,
    bot_features,
    pointer_and_bot_features,
    pointer_features,
)
from rased.features.trajectory import PointerAction, Trajectory


def feats(traj: Trajectory) -> dict[str, float]:
    values = pointer_features(traj)
    assert values.shape == (N_POINTER_FEATURES,)
    assert np.isfinite(values).all()
    return dict(zip(POINTER_FEATURE_NAMES, values.tolist(), strict=True))


def bot_feats(traj: Trajectory) -> dict[str, float]:
    values = bot_features(traj)
    assert values.shape == (N_BOT_FEATURES,)
    assert np.isfinite(values).all()
    return dict(zip(BOT_FEATURE_NAMES, values.tolist(), strict=True))


def line(n: int = 50, dt: float = 10.0, step: float = 3.0) -> Trajectory:
    t = np.arange(n) * dt
    return Trajectory.from_arrays(t, 100 + step * np.arange(n), 200 + step * np.arange(n))


def circle(n: int = 100, radius: float = 200.0, dt: float = 16.0) -> Trajectory:
    a = np.arange(n) * 2 * math.pi / n
    return Trajectory.from_arrays(np.arange(n) * dt, radius * np.cos(a), radius * np.sin(a))


def test_straight_constant_speed_line() -> None:
    f = feats(line())
    assert f["straightness"] == pytest.approx(1.0)
    assert f["local_straightness_mean"] == pytest.approx(1.0)
    assert f["turn_abs_mean"] == pytest.approx(0.0, abs=1e-9)
    assert f["log_curvature_median"] == pytest.approx(0.0, abs=1e-9)
    assert f["straight_step_frac"] == 1.0
    assert f["speed_cv"] == pytest.approx(0.0, abs=1e-9)
    assert f["log_speed_mean"] == pytest.approx(math.log1p(3 * math.sqrt(2) / 10))
    assert f["dt_cv"] == pytest.approx(0.0, abs=1e-9)
    assert f["dt_regular_frac"] == 1.0
    assert f["jitter"] == pytest.approx(0.0, abs=1e-9)
    assert f["still_step_frac"] == 0.0
    assert f["pauses_per_s"] == 0.0
    assert f["direction_entropy"] == pytest.approx(0.0, abs=1e-9)
    assert f["log_duration_ms"] == pytest.approx(math.log1p(490.0))


def test_circle_turns_evenly_one_way() -> None:
    n = 100
    f = feats(circle(n))
    assert f["turn_abs_mean"] == pytest.approx(2 * math.pi / n, rel=1e-6)
    assert f["turn_std"] == pytest.approx(0.0, abs=1e-9)
    assert f["turn_sign_change_frac"] == 0.0
    assert f["reversal_frac"] == 0.0
    assert f["straightness"] < 0.1
    assert f["direction_entropy"] == pytest.approx(1.0, abs=0.02)


def test_jitter_and_irregular_timing_raise_their_features() -> None:
    rng = np.random.default_rng(0)
    smooth = line(200)
    noisy = Trajectory.from_arrays(
        np.cumsum(rng.uniform(5, 25, 200)),
        smooth.x + rng.normal(0, 1.5, 200),
        smooth.y + rng.normal(0, 1.5, 200),
    )
    f_smooth, f_noisy = feats(smooth), feats(noisy)
    assert f_noisy["jitter"] > f_smooth["jitter"] + 0.1
    assert f_noisy["dt_cv"] > 0.2
    assert f_noisy["dt_regular_frac"] < 0.5
    assert f_noisy["turn_sign_change_frac"] > 0.3


def test_pause_is_counted() -> None:
    t = np.r_[np.arange(50) * 10.0, 1490.0 + np.arange(50) * 10.0]
    x = np.arange(100, dtype=float)
    f = feats(Trajectory.from_arrays(t, x, np.zeros(100)))
    # One gap of 1000 ms in a 1980 ms trajectory.
    assert f["pauses_per_s"] == pytest.approx(1 / 1.98)
    assert f["pause_time_frac"] == pytest.approx(1000 / 1980)
    assert f["log_longest_pause_ms"] == pytest.approx(math.log1p(1000.0))


def test_power_law_slope_is_recovered() -> None:
    # An ellipse drawn with speed = radius of curvature ** (1/3), the human "1/3 power law".
    a, b = 300.0, 100.0
    phase = np.linspace(0, 2 * math.pi, 2001)
    x, y = a * np.cos(phase), b * np.sin(phase)
    dxp, dyp = -a * np.sin(phase), b * np.cos(phase)
    ddx, ddy = -a * np.cos(phase), -b * np.sin(phase)
    speed_sq = dxp**2 + dyp**2
    radius = speed_sq**1.5 / np.abs(dxp * ddy - dyp * ddx)
    ds = np.sqrt(speed_sq) * (phase[1] - phase[0])
    v = radius ** (1 / 3) / 10
    t = np.r_[0.0, np.cumsum((ds[:-1] + ds[1:]) / 2 / ((v[:-1] + v[1:]) / 2))]
    f = feats(Trajectory.from_arrays(t, x, y))
    assert f["power_law_slope"] == pytest.approx(1 / 3, abs=0.02)
    assert f["power_law_corr"] > 0.99


def test_simultaneous_events_do_not_divide_by_zero() -> None:
    t = np.repeat(np.arange(20) * 10.0, 2)
    x = np.arange(40, dtype=float)
    f = feats(Trajectory.from_arrays(t, x, x))
    assert f["log_speed_mean"] > 0


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_trajectories_give_finite_zeros(n: int) -> None:
    f = feats(Trajectory.from_arrays(np.arange(n) * 10.0, np.arange(n), np.zeros(n)))
    assert f["log_events"] == pytest.approx(math.log1p(n))
    assert f["speed_cv"] == 0.0


def test_trajectory_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Trajectory.from_arrays([0, 1], [0], [0, 1])
    with pytest.raises(ValueError, match="non-finite"):
        Trajectory.from_arrays([0, 1], [0, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="unknown pointer action"):
        Trajectory.from_arrays([0], [0], [0], [7])


def test_trajectory_sorts_by_time_and_windows() -> None:
    traj = Trajectory.from_arrays(
        [30, 10, 20, 0, 40], [3, 1, 2, 0, 4], [0] * 5, [PointerAction.MOVE] * 5
    )
    assert traj.x.tolist() == [0, 1, 2, 3, 4]
    assert traj.duration_ms == 40
    assert [len(w) for w in traj.windows(2)] == [2, 2, 1]
    assert [len(w) for w in traj.windows(2, min_size=2)] == [2, 2]


def test_bot_features_leave_out_scale_and_per_event_kinematics() -> None:
    assert len(set(BOT_FEATURE_NAMES)) == N_BOT_FEATURES
    assert set(REGULARITY_FEATURE_NAMES) <= set(BOT_FEATURE_NAMES)
    for name in ("log_events", "log_path_px", "log_dt_median_ms", "speed_cv", "jerk_cv"):
        assert name not in BOT_FEATURE_NAMES
    shared = [n for n in BOT_FEATURE_NAMES if n in POINTER_FEATURE_NAMES]
    assert shared == [n for n in POINTER_FEATURE_NAMES if n in BOT_FEATURE_NAMES]
    traj = circle()
    pointer, bot = pointer_and_bot_features(traj)
    assert np.array_equal(pointer, pointer_features(traj))
    assert np.array_equal(bot, bot_features(traj))
    f, g = feats(traj), bot_feats(traj)
    assert all(g[n] == f[n] for n in shared)


def test_a_scripted_line_is_perfectly_regular() -> None:
    # Whole-pixel steps of one size at a fixed tick: what a tween at a timer produces.
    f = bot_feats(line(100, dt=16.0, step=3.0))
    assert f["dt_mad_rel"] == 0.0
    assert f["step_mad_rel"] == 0.0
    assert f["step_change_rel"] == 0.0
    assert f["repeat_step_frac"] == 1.0
    assert f["constant_step_frac"] == 1.0


def test_a_hand_drawn_line_is_not() -> None:
    rng = np.random.default_rng(0)
    n = 200
    t = np.cumsum(rng.normal(16.0, 2.0, n))
    x = np.round(np.cumsum(rng.gamma(4.0, 1.0, n)))
    y = np.round(rng.normal(0, 1.0, n).cumsum())
    f = bot_feats(Trajectory.from_arrays(t, x, y))
    assert f["dt_mad_rel"] > 0.05
    assert f["step_mad_rel"] > 0.2
    assert f["step_change_rel"] > 0.1
    assert f["repeat_step_frac"] < 0.2
    assert f["constant_step_frac"] < 0.3


def _arc(ticks: NDArray[np.int64], tick_ms: float = 16.7) -> Trajectory:
    t = np.r_[0.0, np.cumsum(ticks * tick_ms)]
    a = np.arange(t.size) * 0.05
    return Trajectory.from_arrays(t, np.round(300 * np.cos(a)), np.round(300 * np.sin(a)))


def test_long_intervals_on_a_timer_lie_on_its_lattice() -> None:
    # A script sleeping 1, 3 or 5 ticks of 16.7 ms: every long interval is a whole multiple.
    assert bot_feats(_arc(np.tile([1, 1, 3, 1, 5], 20)))["dt_lattice"] == 1.0
    rng = np.random.default_rng(2)
    free = Trajectory.from_arrays(
        np.cumsum(rng.uniform(5, 60, 100)), np.arange(100.0), np.zeros(100)
    )
    assert bot_feats(free)["dt_lattice"] < 0.5


def test_alternating_intervals_are_anti_correlated() -> None:
    assert bot_feats(_arc(np.tile([1, 3], 50)))["dt_autocorr"] == pytest.approx(-1.0)


def test_regularity_features_are_scale_free() -> None:
    rng = np.random.default_rng(1)
    n = 150
    t = np.cumsum(rng.uniform(8, 24, n))
    a = np.cumsum(rng.uniform(0.01, 0.05, n))
    r = 200 + rng.normal(0, 5, n)
    base = bot_feats(Trajectory.from_arrays(t, r * np.cos(a), r * np.sin(a)))
    # The same movement twice as large and twice as slow.
    scaled = bot_feats(Trajectory.from_arrays(2 * t, 2 * r * np.cos(a), 2 * r * np.sin(a)))
    for name in ("dt_mad_rel", "dt_autocorr", "step_mad_rel", "step_change_rel", "step_autocorr"):
        assert scaled[name] == pytest.approx(base[name], abs=1e-9), name


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_trajectories_give_finite_bot_features(n: int) -> None:
    f = bot_feats(Trajectory.from_arrays(np.arange(n) * 10.0, np.arange(n), np.zeros(n)))
    assert all(f[name] == 0.0 for name in REGULARITY_FEATURE_NAMES)


def test_resampled_speed_profile_ignores_bursty_delivery() -> None:
    # A hand circling at constant speed, sampled every 10 ms; then the same samples
    # delivered in bursts (a virtual machine's input): every other event 1 ms after the last.
    n = 300
    t = np.arange(n) * 10.0
    a = t / 1000.0
    x, y = 200 * np.cos(a), 200 * np.sin(a)
    bursty_t = np.where(np.arange(n) % 2 == 1, t - 9.0, t)
    even = feats(Trajectory.from_arrays(t, x, y)), bot_feats(Trajectory.from_arrays(t, x, y))
    bursty = (
        feats(Trajectory.from_arrays(bursty_t, x, y)),
        bot_feats(Trajectory.from_arrays(bursty_t, x, y)),
    )
    assert even[0]["speed_cv"] < 0.01
    assert bursty[0]["speed_cv"] > 0.5  # per-event speeds spike
    for name in ("speed_cv_resampled", "rel_speed_change_resampled"):
        assert even[1][name] < 0.01
        assert bursty[1][name] < 0.1, name
