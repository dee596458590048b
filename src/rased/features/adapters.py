"""Input adapters: DELBOT rows, Balabit sessions and our `EventBatch` pointer events.

Each adapter returns the same `Trajectory` (times in ms, positions in pixels), so training
on public data and scoring live traffic run the very same feature code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from rased.features.trajectory import PointerAction, Trajectory
from rased.v1 import events_pb2

# DELBOT's `event` column and Balabit's `state` column, mapped to our actions.
_DELBOT_ACTIONS = {
    "Move": PointerAction.MOVE,
    "Pressed": PointerAction.DOWN,
    "Released": PointerAction.UP,
}
_BALABIT_ACTIONS = {
    "Move": PointerAction.MOVE,
    "Drag": PointerAction.MOVE,
    "Pressed": PointerAction.DOWN,
    "Released": PointerAction.UP,
}
# Some DELBOT recordings store positions as fractions of the screen instead of pixels.
_NORMALISED_LIMIT = 1.5
# Remote-desktop captures (Balabit) hold a few sentinel positions far off any screen.
_MAX_SCREEN_PX = 20000.0


def from_delbot(
    t_ms: Sequence[float],
    event: Sequence[str],
    x: Sequence[float],
    y: Sequence[float],
    res_w: float,
    res_h: float,
) -> Trajectory:
    """Return the trajectory of one DELBOT session (columns `t`, `event`, `x`, `y`).

    Positions given as fractions of the screen are scaled to pixels with the session's
    resolution, so every recording is in the same unit.

    Raises:
        ValueError: an event name is not Pressed, Move or Released.
    """
    try:
        actions = [_DELBOT_ACTIONS[e] for e in event]
    except KeyError as exc:
        raise ValueError(f"unknown DELBOT event {exc.args[0]!r}") from None
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.size and max(np.abs(xs).max(), np.abs(ys).max()) <= _NORMALISED_LIMIT:
        xs = xs * float(res_w)
        ys = ys * float(res_h)
    return Trajectory.from_arrays(t_ms, xs, ys, actions)


def from_balabit(
    client_timestamp_s: Sequence[float],
    button: Sequence[str],
    state: Sequence[str],
    x: Sequence[float],
    y: Sequence[float],
) -> Trajectory:
    """Return the trajectory of one Balabit session (its CSV columns, times in seconds).

    Scroll-wheel rows and off-screen sentinel positions are left out: they are not pointer
    movement.
    """
    keep = [
        i
        for i, (b, s) in enumerate(zip(button, state, strict=True))
        if b != "Scroll" and s in _BALABIT_ACTIONS
    ]
    t = np.asarray(client_timestamp_s, dtype=np.float64)[keep] * 1000.0
    xs = np.asarray(x, dtype=np.float64)[keep]
    ys = np.asarray(y, dtype=np.float64)[keep]
    acts = np.array([_BALABIT_ACTIONS[state[i]] for i in keep], dtype=np.int8)
    on_screen = (np.abs(xs) < _MAX_SCREEN_PX) & (np.abs(ys) < _MAX_SCREEN_PX)
    return Trajectory.from_arrays(t[on_screen], xs[on_screen], ys[on_screen], acts[on_screen])


def from_event_batches(batches: Iterable[events_pb2.EventBatch]) -> Trajectory:
    """Return the pointer trajectory of a transaction's batches (any order; sorted by sequence)."""
    t: list[float] = []
    xs: list[float] = []
    ys: list[float] = []
    acts: list[int] = []
    for batch in sorted(batches, key=lambda b: b.sequence):
        for event in batch.events:
            if event.WhichOneof("kind") != "pointer":
                continue
            pointer = event.pointer
            if pointer.action not in (a.value for a in PointerAction):
                continue
            t.append(float(event.timestamp_ms))
            xs.append(pointer.x)
            ys.append(pointer.y)
            acts.append(int(pointer.action))
    if not t:
        return Trajectory.empty()
    # Epoch milliseconds lose sub-ms precision in float64 only after year 285,000; relative
    # times keep the features independent of the wall clock anyway.
    t0 = min(t)
    return Trajectory.from_arrays([v - t0 for v in t], xs, ys, acts)
