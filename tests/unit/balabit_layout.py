"""Sessions in the Balabit layout written from the DELBOT slice's people, for tests.

The Balabit data states no licence and is not copied into the repository; the DELBOT
slice is MIT (tests/data/README.md).
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from rased.features.trajectory import PointerAction
from rased.training.datasets import read_delbot

DELBOT = Path(__file__).resolve().parents[1] / "data" / "delbot_mouse_slice.csv.gz"
_STATE = {PointerAction.MOVE: "Move", PointerAction.DOWN: "Pressed", PointerAction.UP: "Released"}


def balabit_people(dest: Path, users: int = 2, sessions_per_user: int = 3) -> int:
    """Write DELBOT people's sessions in the Balabit layout; return their pointer events."""
    people = [s for s in read_delbot(DELBOT) if s.label == 0][: users * sessions_per_user]
    events = 0
    for i, s in enumerate(people):
        path = dest / f"user{i % users}" / f"session_{i}.csv.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = s.trajectory
        with gzip.open(path, "wt", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["record timestamp", "client timestamp", "button", "state", "x", "y"])
            for at, x, y, action in zip(t.t_ms, t.x, t.y, t.action, strict=True):
                state = _STATE[PointerAction(int(action))]
                button = "NoButton" if state == "Move" else "Left"
                writer.writerow([at / 1000, at / 1000, button, state, round(x), round(y)])
            # Scroll rows are not pointer movement and must not count towards a window.
            writer.writerow([0, t.t_ms[-1] / 1000, "Scroll", "Down", 5, 5])
        events += len(t)
    return events
