"""Generator of scripted-bot pointer trajectories, for families the public data lacks.

Public bot recordings cover a few tools; the bots the model meets are written with
others. This generator draws the same kind of task (a closed shape through waypoints,
mouse button held) with the movement techniques common automation libraries use:
teleporting from point to point, linear and eased tweens between points, Bezier curves,
and the "WindMouse" random walk that "human-like" mouse libraries build on. Times are
those a browser would stamp (the script's ticks, plus scheduling noise).

Assumptions, stated for the model card: the shape is an ellipse of 100-330 px radius
through 3-250 waypoints (as in DELBOT's bot recorder), each tween takes 1-150 ms per
waypoint, positions are rounded to whole pixels (OS cursors move in pixels), and timer
noise is Gaussian with 0.2-2 ms standard deviation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from rased.features.trajectory import FloatArray, PointerAction, Trajectory

FAMILIES = ("teleport", "linear", "eased", "bezier", "windmouse")


def _waypoints(rng: np.random.Generator) -> FloatArray:
    radius = rng.choice([100.0, 200.0, 250.0, 300.0, 330.0]) * rng.uniform(0.8, 1.2)
    steps = int(rng.choice([3, 5, 8, 12, 15, 20, 30, 50, 80, 100, 150, 250]))
    start = rng.uniform(0, 2 * math.pi)
    direction = rng.choice([-1.0, 1.0])
    ellipse = rng.uniform(0, 0.4)
    sx, sy = rng.uniform(0.8, 1.2, size=2)
    cx, cy = 768.0 + rng.normal(0, 20), 393.0 + rng.normal(0, 20)
    angles = start + np.arange(steps + 1) * 2 * math.pi / steps
    radii = radius * np.cumprod(rng.uniform(0.99, 1.01, size=steps + 1))
    x = cx + sx * radii * np.cos(angles)
    y = cy + sy * radii * np.sin(angles + ellipse) * direction
    return np.column_stack([x, y])


def _ease(kind: str) -> Callable[[FloatArray], FloatArray]:
    if kind == "in_out_quad":
        return lambda u: np.where(u < 0.5, 2 * u * u, 1 - (-2 * u + 2) ** 2 / 2)
    if kind == "out_quad":
        return lambda u: 1 - (1 - u) ** 2
    if kind == "out_circ":
        return lambda u: np.sqrt(1 - (u - 1) ** 2)
    return lambda u: u


def _tween(
    points: FloatArray, rng: np.random.Generator, ease: Callable[[FloatArray], FloatArray]
) -> tuple[FloatArray, FloatArray]:
    """Move along straight segments with an easing function, at a fixed script tick."""
    per_point_ms = rng.uniform(1, 150)
    tick = rng.uniform(4, 20)
    xs, ts = [points[:1]], [np.zeros(1)]
    t0 = 0.0
    for a, b in itertools.pairwise(points):
        n = max(1, round(per_point_ms / tick))
        u = ease(np.arange(1, n + 1) / n)
        xs.append(a + (b - a) * u[:, None])
        ts.append(t0 + np.arange(1, n + 1) * tick)
        t0 += n * tick
    return np.concatenate(xs), np.concatenate(ts)


def _bezier(points: FloatArray, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Cubic Bezier curve between waypoints with random control points, eased in time."""
    per_point_ms = rng.uniform(5, 150)
    tick = rng.uniform(4, 20)
    ease = _ease(str(rng.choice(["linear", "in_out_quad", "out_quad"])))
    xs, ts = [points[:1]], [np.zeros(1)]
    t0 = 0.0
    for a, b in itertools.pairwise(points):
        span = float(np.hypot(*(b - a))) + 1.0
        c1 = a + (b - a) * 0.33 + rng.normal(0, 0.3 * span, 2)
        c2 = a + (b - a) * 0.66 + rng.normal(0, 0.3 * span, 2)
        n = max(2, round(per_point_ms / tick))
        u = ease(np.arange(1, n + 1) / n)[:, None]
        curve = (1 - u) ** 3 * a + 3 * (1 - u) ** 2 * u * c1 + 3 * (1 - u) * u**2 * c2 + u**3 * b
        xs.append(curve)
        ts.append(t0 + np.arange(1, n + 1) * tick)
        t0 += n * tick
    return np.concatenate(xs), np.concatenate(ts)


def _windmouse(points: FloatArray, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """WindMouse: a walk pulled by gravity to each waypoint and pushed by random wind."""
    gravity, wind_max = rng.uniform(5, 12), rng.uniform(1, 5)
    max_step, target_area = rng.uniform(15, 40), rng.uniform(3, 10)
    tick = rng.uniform(4, 20)
    pos = points[0].astype(np.float64)
    vel = np.zeros(2)
    wind = np.zeros(2)
    out = [pos.copy()]
    for target in points[1:]:
        for _ in range(300):
            dist = float(np.hypot(*(target - pos)))
            if dist < 2:
                break
            w = min(wind_max, dist)
            step_cap = max_step
            if dist >= target_area:
                wind = wind / math.sqrt(3) + rng.uniform(-w, w, 2) / math.sqrt(5)
            else:
                # Near the target the walk slows down, as WindMouse does, so it settles.
                wind /= math.sqrt(3)
                step_cap = min(max_step, 3 + rng.uniform(0, 3))
            vel = vel + wind + gravity * (target - pos) / dist
            speed = float(np.hypot(*vel))
            if speed > step_cap:
                vel = vel / speed * (step_cap / 2 + rng.uniform(0, step_cap / 2))
            pos = pos + vel
            out.append(pos.copy())
    xy = np.array(out)
    return xy, np.arange(len(xy)) * tick


def _teleport(points: FloatArray, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Set the cursor to each waypoint in turn, sleeping on a schedule between them."""
    base = rng.uniform(1, 150)
    i = np.arange(1, len(points), dtype=np.float64)
    schedule = str(rng.choice(["constant", "quadratic", "random"]))
    if schedule == "constant":
        waits = np.full(i.size, base)
    elif schedule == "quadratic":
        waits = base / np.sqrt(i)
    else:
        waits = rng.uniform(0.2, 1.8, i.size) * base
    return points, np.r_[0.0, np.cumsum(np.maximum(waits, 1.0))]


def generate(family: str, rng: np.random.Generator) -> Trajectory:
    """Return one bot trajectory of the given family (one of `FAMILIES`)."""
    points = _waypoints(rng)
    if family == "teleport":
        xy, t = _teleport(points, rng)
    elif family == "linear":
        xy, t = _tween(points, rng, _ease("linear"))
    elif family == "eased":
        xy, t = _tween(points, rng, _ease(str(rng.choice(["in_out_quad", "out_quad", "out_circ"]))))
    elif family == "bezier":
        xy, t = _bezier(points, rng)
    elif family == "windmouse":
        xy, t = _windmouse(points, rng)
    else:
        raise ValueError(f"unknown bot family {family!r}; expected one of {FAMILIES}")
    xy = np.round(xy)
    t = t + np.abs(rng.normal(0, rng.uniform(0.2, 2.0), t.size))
    actions = np.full(t.size, PointerAction.MOVE, dtype=np.int8)
    actions[0] = PointerAction.DOWN
    actions = np.r_[actions, PointerAction.UP]
    return Trajectory.from_arrays(
        np.r_[t, t[-1] + rng.uniform(1, 30)],
        np.r_[xy[:, 0], xy[-1, 0]],
        np.r_[xy[:, 1], xy[-1, 1]],
        actions,
    )


def generate_many(n: int, seed: int) -> tuple[list[Trajectory], list[str]]:
    """Return `n` trajectories cycling through the families, reproducibly from `seed`."""
    rng = np.random.default_rng(seed)
    families = [FAMILIES[i % len(FAMILIES)] for i in range(n)]
    return [generate(f, rng) for f in families], families
