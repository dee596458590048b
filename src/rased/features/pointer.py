"""Pointer dynamics: a fixed-length feature vector from one `Trajectory`.

The features describe how a pointer moves, not where: timing (pace, regularity, pauses),
kinematics (speed, acceleration, jerk), geometry (turning, curvature, straightness,
jitter) and their relation (the speed-curvature power law people follow). They are
meant to separate people from automation and one person from another.

`pointer_features` (`POINTER_FEATURE_NAMES`) describes a person's movement: user profiles
and account takeover compare it. `bot_features` (`BOT_FEATURE_NAMES`, bot_detection's
input) keeps those of them that say how the pointer moves, not how much was drawn or how a
device delivers its events, and adds regularity features: scripts move in steps of a
computed size, at a timer's pace, so their step lengths, step vectors and intervals repeat
in ways a hand's do not; and the speed profile of the path resampled on a common clock,
which a device's event rate and bursts do not change.
"""

from __future__ import annotations

import numpy as np

from rased.features.trajectory import FloatArray, Trajectory

# A gap between two events longer than this is a pause, not a movement step.
PAUSE_MS = 200.0
# Turns below this many radians count as straight steps.
_STRAIGHT_RAD = 0.01
# Steps of a window over which local straightness is measured.
_STRAIGHTNESS_WINDOW = 5
# Below this many movement steps the kinematic features are left at 0.
_MIN_STEPS = 3
_DIRECTION_BINS = 8
_MS_PER_S = 1000.0
_MIN_LOG_VARIANCE = 1e-8

POINTER_FEATURE_NAMES: tuple[str, ...] = (
    "log_events",  # log(1 + events)
    "log_duration_ms",  # log(1 + first to last event)
    "log_path_px",  # log(1 + path length)
    "straightness",  # displacement / path length, whole trajectory
    "local_straightness_mean",  # chord / path over short windows
    "local_straightness_std",
    "log_dt_median_ms",  # pace of the event stream
    "dt_cv",  # timing irregularity
    "dt_regular_frac",  # share of steps within 5% of the median step time
    "log_speed_mean",  # px per ms
    "speed_cv",
    "speed_peak_ratio",  # max speed / mean speed
    "rel_speed_change_mean",  # |v2 - v1| / (v1 + v2)
    "log_acc_abs_mean",
    "acc_cv",
    "log_jerk_abs_mean",
    "jerk_cv",
    "turn_abs_mean",  # radians per step
    "turn_std",
    "turn_smoothness",  # mean |change of turn|
    "turn_sign_change_frac",  # wiggle: turns that reverse direction
    "straight_step_frac",
    "reversal_frac",  # turns sharper than 90 degrees
    "log_curvature_median",
    "jitter",  # distance to the neighbours' midpoint / mean step
    "speed_peaks_per_step",  # submovements
    "step_cv",
    "still_step_frac",  # events without displacement
    "pauses_per_s",
    "pause_time_frac",
    "log_longest_pause_ms",
    "power_law_slope",  # log speed vs log radius of curvature (about 1/3 for people)
    "power_law_corr",
    "direction_entropy",  # of movement directions, 0..1
)
N_POINTER_FEATURES = len(POINTER_FEATURE_NAMES)

# Left out of bot_detection's input. Scale: how much was drawn, which the task sets, not
# whether a hand or a script drew it. Per-event kinematics: speeds and their derivatives
# over single intervals, which a device's event delivery distorts (a virtual machine
# delivers moves in bursts a few ms apart, so single-interval speeds spike), and the pace.
_NOT_FOR_BOTS = frozenset(
    {
        "log_events",
        "log_duration_ms",
        "log_path_px",
        "log_dt_median_ms",
        "log_speed_mean",
        "speed_cv",
        "speed_peak_ratio",
        "rel_speed_change_mean",
        "log_acc_abs_mean",
        "acc_cv",
        "log_jerk_abs_mean",
        "jerk_cv",
    }
)
REGULARITY_FEATURE_NAMES: tuple[str, ...] = (
    "dt_mad_rel",  # median |interval - median| / median: timer regularity, scale-free
    "dt_lattice",  # long intervals on whole multiples of the median one (a timer's ticks)
    "dt_autocorr",  # lag-1 autocorrelation of the intervals
    "step_mad_rel",  # median |step - median| / median: steps of one computed size
    "step_change_rel",  # |s2 - s1| / (s1 + s2), consecutive step lengths, no time involved
    "step_autocorr",  # lag-1 autocorrelation of the step lengths
    "repeat_step_frac",  # steps whose (dx, dy) equals the previous one exactly
    "constant_step_frac",  # steps whose (dx, dy) differs from the previous by <= 1 px
    "turn_autocorr",  # lag-1 autocorrelation of the turning angles
    # The path resampled on a common clock (linear interpolation every RESAMPLE_MS): the
    # shape of its speed profile, whatever the device's event rate or burstiness.
    "speed_cv_resampled",
    "rel_speed_change_resampled",  # |v2 - v1| / (v1 + v2)
    "acc_cv_resampled",  # coefficient of variation of |acceleration|
)
BOT_FEATURE_NAMES: tuple[str, ...] = (
    *(name for name in POINTER_FEATURE_NAMES if name not in _NOT_FOR_BOTS),
    *REGULARITY_FEATURE_NAMES,
)
N_BOT_FEATURES = len(BOT_FEATURE_NAMES)
# An interval this close (in medians) to a whole multiple of the median is on the lattice.
_LATTICE_TOLERANCE = 0.1
# Intervals longer than this many medians are the ones tested against the lattice.
_LATTICE_FROM = 1.5
# A step vector that changes by at most this many pixels counts as constant.
_CONSTANT_STEP_PX = 1.0
_MIN_CORR_VARIANCE = 1e-12
# The common clock of the resampled features: slower than every device's event rate.
RESAMPLE_MS = 50.0
# Below this many clock periods of movement the resampled features are left at 0.
_MIN_RESAMPLED_PERIODS = 4


def _mean(a: FloatArray) -> float:
    return float(a.mean()) if a.size else 0.0


def _std(a: FloatArray) -> float:
    return float(a.std()) if a.size else 0.0


def _cv(a: FloatArray) -> float:
    """Coefficient of variation of |a|; 0 where undefined."""
    if not a.size:
        return 0.0
    m = float(np.abs(a).mean())
    return float(np.abs(a).std() / m) if m > 0 else 0.0


def _wrap(angle: FloatArray) -> FloatArray:
    """Wrap angles into (-pi, pi]."""
    wrapped: FloatArray = np.pi - np.mod(np.pi - angle, 2 * np.pi)
    return wrapped


def _collapse_same_time(traj: Trajectory) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Keep the last position of each timestamp: simultaneous events have no step time."""
    t = traj.t_ms
    last = np.ones(t.size, dtype=bool)
    if t.size > 1:
        last[:-1] = np.diff(t) > 0
    return t[last], traj.x[last], traj.y[last]


def pointer_features(traj: Trajectory) -> FloatArray:
    """Return the `POINTER_FEATURE_NAMES` features of a trajectory (zeros where undefined)."""
    f = _features(traj, regularity=False)
    return np.array([f[name] for name in POINTER_FEATURE_NAMES], dtype=np.float64)


def bot_features(traj: Trajectory) -> FloatArray:
    """Return the `BOT_FEATURE_NAMES` features of a trajectory (zeros where undefined)."""
    f = _features(traj, regularity=True)
    return np.array([f[name] for name in BOT_FEATURE_NAMES], dtype=np.float64)


def pointer_and_bot_features(traj: Trajectory) -> tuple[FloatArray, FloatArray]:
    """Return `pointer_features` and `bot_features` of a trajectory, computed once."""
    f = _features(traj, regularity=True)
    return (
        np.array([f[name] for name in POINTER_FEATURE_NAMES], dtype=np.float64),
        np.array([f[name] for name in BOT_FEATURE_NAMES], dtype=np.float64),
    )


def _features(traj: Trajectory, *, regularity: bool) -> dict[str, float]:
    f = dict.fromkeys((*POINTER_FEATURE_NAMES, *REGULARITY_FEATURE_NAMES), 0.0)
    f["log_events"] = float(np.log1p(len(traj)))
    f["log_duration_ms"] = float(np.log1p(traj.duration_ms))
    t, x, y = _collapse_same_time(traj)
    if t.size > _MIN_STEPS:
        _timing(f, t)
        _kinematics(f, t, x, y)
        _geometry(f, t, x, y)
        if regularity:
            _regularity(f, t, x, y)
            _resampled(f, t, x, y)
    return f


def _timing(f: dict[str, float], t: FloatArray) -> None:
    dt = np.diff(t)
    pause = dt > PAUSE_MS
    active = dt[~pause]
    duration = float(t[-1] - t[0])
    if active.size:
        median = float(np.median(active))
        f["log_dt_median_ms"] = float(np.log1p(median))
        f["dt_cv"] = _cv(active)
        f["dt_regular_frac"] = float(np.mean(np.abs(active - median) <= 0.05 * median))
    if duration > 0:
        f["pauses_per_s"] = float(pause.sum() / duration * _MS_PER_S)
        f["pause_time_frac"] = float(dt[pause].sum() / duration)
    f["log_longest_pause_ms"] = float(np.log1p(dt[pause].max())) if pause.any() else 0.0


def _kinematics(f: dict[str, float], t: FloatArray, x: FloatArray, y: FloatArray) -> None:
    dt = np.diff(t)
    ds = np.hypot(np.diff(x), np.diff(y))
    active = dt <= PAUSE_MS
    v = ds / dt
    va = v[active]
    if va.size:
        mean_v = float(va.mean())
        f["log_speed_mean"] = float(np.log1p(mean_v))
        f["speed_cv"] = _cv(va)
        f["speed_peak_ratio"] = float(va.max() / mean_v) if mean_v > 0 else 0.0
        f["still_step_frac"] = float(np.mean(ds[active] == 0))
        moving = ds[active][ds[active] > 0]
        f["step_cv"] = _cv(moving)
    # Consecutive step pairs, both inside a movement.
    pair = active[1:] & active[:-1]
    v1, v2 = v[:-1][pair], v[1:][pair]
    if v1.size:
        total = v1 + v2
        rel = np.divide(np.abs(v2 - v1), total, out=np.zeros_like(total), where=total > 0)
        f["rel_speed_change_mean"] = _mean(rel)
        mid_dt = (dt[:-1] + dt[1:])[pair] / 2
        acc = (v2 - v1) / mid_dt
        f["log_acc_abs_mean"] = float(np.log1p(np.abs(acc).mean() * _MS_PER_S))
        f["acc_cv"] = _cv(acc)
        peaks = (v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:]) & active[1:-1]
        f["speed_peaks_per_step"] = float(peaks.sum() / max(int(active.sum()), 1))
    # Jerk over three consecutive active steps.
    triple = active[2:] & active[1:-1] & active[:-2]
    if triple.any():
        acc_all = np.diff(v) / ((dt[:-1] + dt[1:]) / 2)
        jerk = (np.diff(acc_all) / dt[1:-1])[triple]
        f["log_jerk_abs_mean"] = float(np.log1p(np.abs(jerk).mean() * _MS_PER_S**2))
        f["jerk_cv"] = _cv(jerk)


def _geometry(f: dict[str, float], t: FloatArray, x: FloatArray, y: FloatArray) -> None:
    dx, dy = np.diff(x), np.diff(y)
    ds = np.hypot(dx, dy)
    dt = np.diff(t)
    path = float(ds.sum())
    f["log_path_px"] = float(np.log1p(path))
    if path <= 0:
        return
    f["straightness"] = float(np.hypot(x[-1] - x[0], y[-1] - y[0]) / path)
    _local_straightness(f, x, y, ds)
    moving = ds > 0
    mx, my = x[np.r_[True, moving]], y[np.r_[True, moving]]
    if mx.size > 2:
        _jitter(f, mx, my)
    theta = np.arctan2(dy[moving], dx[moving])
    hist = np.bincount(
        ((theta + np.pi) / (2 * np.pi) * _DIRECTION_BINS).astype(int) % _DIRECTION_BINS,
        weights=ds[moving],
        minlength=_DIRECTION_BINS,
    )
    p = hist[hist > 0] / hist.sum()
    f["direction_entropy"] = float(-(p * np.log(p)).sum() / np.log(_DIRECTION_BINS))
    if theta.size < _MIN_STEPS:
        return
    turn = _wrap(np.diff(theta))
    f["turn_abs_mean"] = _mean(np.abs(turn))
    f["turn_std"] = _std(turn)
    f["turn_smoothness"] = _mean(np.abs(_wrap(np.diff(turn))))
    signs = np.sign(turn[np.abs(turn) >= _STRAIGHT_RAD])
    f["turn_sign_change_frac"] = _mean((signs[1:] != signs[:-1]).astype(np.float64))
    f["straight_step_frac"] = _mean((np.abs(turn) < _STRAIGHT_RAD).astype(np.float64))
    f["reversal_frac"] = _mean((np.abs(turn) > np.pi / 2).astype(np.float64))
    seg = ds[moving]
    arc = (seg[1:] + seg[:-1]) / 2
    curvature = np.abs(turn) / arc
    f["log_curvature_median"] = float(np.log1p(np.median(curvature) * 100.0))
    # Speed at each turn (mean of the two steps around it) against the radius of curvature.
    speed = (seg / dt[moving])[1:] + (seg / dt[moving])[:-1]
    ok = (curvature > 1e-6) & (speed > 0) & ((dt[moving][1:] + dt[moving][:-1]) <= 2 * PAUSE_MS)
    if ok.sum() > _MIN_STEPS:
        log_r = -np.log(curvature[ok])
        log_v = np.log(speed[ok] / 2)
        dr, dv = log_r - log_r.mean(), log_v - log_v.mean()
        var_r, var_v = float((dr * dr).mean()), float((dv * dv).mean())
        # A (near) constant radius or speed leaves the law undefined: keep 0.
        if var_r > _MIN_LOG_VARIANCE and var_v > _MIN_LOG_VARIANCE:
            cov = float((dr * dv).mean())
            f["power_law_slope"] = float(np.clip(cov / var_r, -5.0, 5.0))
            f["power_law_corr"] = cov / np.sqrt(var_r * var_v)


def _local_straightness(f: dict[str, float], x: FloatArray, y: FloatArray, ds: FloatArray) -> None:
    k = _STRAIGHTNESS_WINDOW
    if ds.size < k:
        return
    cum = np.r_[0.0, np.cumsum(ds)]
    path = cum[k:] - cum[:-k]
    chord = np.hypot(x[k:] - x[:-k], y[k:] - y[:-k])
    ok = path > 0
    if ok.any():
        ratio = chord[ok] / path[ok]
        f["local_straightness_mean"] = _mean(ratio)
        f["local_straightness_std"] = _std(ratio)


def _jitter(f: dict[str, float], x: FloatArray, y: FloatArray) -> None:
    mid_x = (x[2:] + x[:-2]) / 2
    mid_y = (y[2:] + y[:-2]) / 2
    dev = np.hypot(x[1:-1] - mid_x, y[1:-1] - mid_y)
    step = float(np.hypot(np.diff(x), np.diff(y)).mean())
    f["jitter"] = float(dev.mean() / step) if step > 0 else 0.0


def _autocorr(a: FloatArray) -> float:
    """Lag-1 autocorrelation of a series; 0 where a half has (near) no variance."""
    if a.size < _MIN_STEPS + 1:
        return 0.0
    u, v = a[1:] - a[1:].mean(), a[:-1] - a[:-1].mean()
    var_u, var_v = float((u * u).mean()), float((v * v).mean())
    if var_u <= _MIN_CORR_VARIANCE or var_v <= _MIN_CORR_VARIANCE:
        return 0.0
    return float((u * v).mean() / np.sqrt(var_u * var_v))


def _regularity(f: dict[str, float], t: FloatArray, x: FloatArray, y: FloatArray) -> None:
    """Scale-free regularity of intervals, step lengths and step vectors."""
    dt = np.diff(t)
    dx, dy = np.diff(x), np.diff(y)
    ds = np.hypot(dx, dy)
    active = dt <= PAUSE_MS
    intervals = dt[active]
    if intervals.size:
        median = float(np.median(intervals))
        if median > 0:
            f["dt_mad_rel"] = float(np.median(np.abs(intervals - median)) / median)
            ratio = intervals / median
            long = ratio[ratio > _LATTICE_FROM]
            if long.size >= 2:
                on_lattice = np.abs(long - np.round(long)) < _LATTICE_TOLERANCE
                f["dt_lattice"] = float(on_lattice.mean())
    # Moving steps inside movements, in order (pauses and still steps left out).
    moving = active & (ds > 0)
    steps, gaps = ds[moving], dt[moving]
    if steps.size > _MIN_STEPS:
        f["dt_autocorr"] = _autocorr(gaps)
        f["step_autocorr"] = _autocorr(steps)
        median_step = float(np.median(steps))
        f["step_mad_rel"] = float(np.median(np.abs(steps - median_step)) / median_step)
        f["step_change_rel"] = float(np.mean(np.abs(np.diff(steps)) / (steps[1:] + steps[:-1])))
    vx, vy = dx[ds > 0], dy[ds > 0]
    if vx.size >= _MIN_STEPS:
        change_x, change_y = np.diff(vx), np.diff(vy)
        f["repeat_step_frac"] = float(np.mean((change_x == 0) & (change_y == 0)))
        f["constant_step_frac"] = float(np.mean(np.hypot(change_x, change_y) <= _CONSTANT_STEP_PX))
        f["turn_autocorr"] = _autocorr(_wrap(np.diff(np.arctan2(vy, vx))))


def _resampled(f: dict[str, float], t: FloatArray, x: FloatArray, y: FloatArray) -> None:
    """Speed profile of the path sampled every RESAMPLE_MS (linear interpolation)."""
    if t[-1] - t[0] < _MIN_RESAMPLED_PERIODS * RESAMPLE_MS:
        return
    clock = np.arange(t[0], t[-1], RESAMPLE_MS)
    dx = np.diff(np.interp(clock, t, x))
    dy = np.diff(np.interp(clock, t, y))
    v = np.hypot(dx, dy) / RESAMPLE_MS
    mean_v = float(v.mean())
    if mean_v <= 0:
        return
    f["speed_cv_resampled"] = float(v.std() / mean_v)
    total = v[1:] + v[:-1]
    rel = np.divide(np.abs(np.diff(v)), total, out=np.zeros_like(total), where=total > 0)
    f["rel_speed_change_resampled"] = _mean(rel)
    f["acc_cv_resampled"] = _cv(np.hypot(np.diff(dx), np.diff(dy)))
