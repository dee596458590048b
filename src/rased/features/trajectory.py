"""The internal pointer trajectory that every input format is converted to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


class PointerAction(IntEnum):
    """What a pointer event did; the numbers are those of `rased.v1.PointerAction`."""

    MOVE = 1
    DOWN = 2
    UP = 3


@dataclass(frozen=True)
class Trajectory:
    """A pointer trajectory: times in milliseconds, positions in pixels, one action per event.

    Events are sorted by time (stable, so simultaneous events keep their capture order).
    Build it with `Trajectory.from_arrays`, which checks and sorts.
    """

    t_ms: FloatArray
    x: FloatArray
    y: FloatArray
    action: NDArray[np.int8]

    @classmethod
    def from_arrays(
        cls, t_ms: ArrayLike, x: ArrayLike, y: ArrayLike, action: ArrayLike | None = None
    ) -> Trajectory:
        """Return a trajectory from parallel arrays; `action` defaults to all moves.

        Raises:
            ValueError: the arrays differ in length or hold a non-finite value.
        """
        t = np.asarray(t_ms, dtype=np.float64).ravel()
        xs = np.asarray(x, dtype=np.float64).ravel()
        ys = np.asarray(y, dtype=np.float64).ravel()
        acts = (
            np.full(t.shape, PointerAction.MOVE, dtype=np.int8)
            if action is None
            else np.asarray(action, dtype=np.int8).ravel()
        )
        if not (t.shape == xs.shape == ys.shape == acts.shape):
            raise ValueError(
                f"t_ms, x, y and action differ in length: {t.size}, {xs.size}, {ys.size}, "
                f"{acts.size}"
            )
        if not (np.isfinite(t).all() and np.isfinite(xs).all() and np.isfinite(ys).all()):
            raise ValueError("a trajectory holds a non-finite time or position")
        valid = np.isin(acts, [int(a) for a in PointerAction])
        if not valid.all():
            raise ValueError(f"unknown pointer action {int(acts[~valid][0])}")
        order = np.argsort(t, kind="stable")
        return cls(t_ms=t[order], x=xs[order], y=ys[order], action=acts[order])

    @classmethod
    def empty(cls) -> Trajectory:
        """Return a trajectory without events."""
        return cls.from_arrays([], [], [], [])

    def __len__(self) -> int:
        """Return the number of events."""
        return int(self.t_ms.size)

    @property
    def duration_ms(self) -> float:
        """Milliseconds from the first to the last event (0 for fewer than two)."""
        return float(self.t_ms[-1] - self.t_ms[0]) if len(self) > 1 else 0.0

    def slice(self, start: int, stop: int) -> Trajectory:
        """Return the events with indices in [start, stop)."""
        return Trajectory(
            t_ms=self.t_ms[start:stop],
            x=self.x[start:stop],
            y=self.y[start:stop],
            action=self.action[start:stop],
        )

    def windows(self, size: int, min_size: int | None = None) -> list[Trajectory]:
        """Cut the trajectory into consecutive windows of `size` events.

        The last, shorter window is kept if it has at least `min_size` events (default
        half of `size`).
        """
        if size <= 0:
            raise ValueError("window size must be positive")
        least = size // 2 if min_size is None else min_size
        out = [self.slice(i, i + size) for i in range(0, len(self), size)]
        return [w for w in out if len(w) >= max(least, 1)]
