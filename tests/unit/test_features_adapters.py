"""DELBOT rows, Balabit rows and EventBatch pointer events give the same trajectory."""

from __future__ import annotations

import numpy as np
import pytest

from rased.features.adapters import from_balabit, from_delbot, from_event_batches
from rased.features.pointer import pointer_features
from rased.features.trajectory import PointerAction
from rased.v1 import events_pb2

T = [0.0, 16.0, 32.0, 48.0, 64.0, 80.0]
X = [100.0, 110.0, 125.0, 135.0, 150.0, 150.0]
Y = [200.0, 205.0, 212.0, 225.0, 230.0, 230.0]
DELBOT_EVENTS = ["Pressed", "Move", "Move", "Move", "Move", "Released"]
ACTIONS = [2, 1, 1, 1, 1, 3]


def batches() -> list[events_pb2.EventBatch]:
    def event(i: int) -> events_pb2.Event:
        return events_pb2.Event(
            timestamp_ms=1_700_000_000_000 + int(T[i]),
            pointer=events_pb2.PointerEvent(
                action=events_pb2.PointerAction.Value(
                    {1: "POINTER_ACTION_MOVE", 2: "POINTER_ACTION_DOWN", 3: "POINTER_ACTION_UP"}[
                        ACTIONS[i]
                    ]
                ),
                x=X[i],
                y=Y[i],
            ),
        )

    first = events_pb2.EventBatch(sequence=0, events=[event(i) for i in range(3)])
    first.events.append(
        events_pb2.Event(
            timestamp_ms=1_700_000_000_020,
            keystroke=events_pb2.KeystrokeEvent(action=events_pb2.KEY_ACTION_DOWN),
        )
    )
    second = events_pb2.EventBatch(sequence=1, events=[event(i) for i in range(3, 6)])
    return [second, first]  # arrival order differs from sequence order


def test_three_sources_make_the_same_trajectory() -> None:
    delbot = from_delbot(T, DELBOT_EVENTS, X, Y, 1536, 864)
    balabit = from_balabit(
        [t / 1000 for t in T],
        ["Left", "NoButton", "NoButton", "NoButton", "NoButton", "Left"],
        ["Pressed", "Move", "Drag", "Move", "Move", "Released"],
        X,
        Y,
    )
    proto = from_event_batches(batches())
    for traj in (delbot, balabit, proto):
        assert traj.t_ms == pytest.approx(T)
        assert traj.x.tolist() == X
        assert traj.y.tolist() == Y
        assert traj.action.tolist() == ACTIONS
    assert np.array_equal(pointer_features(delbot), pointer_features(proto))
    assert np.allclose(pointer_features(delbot), pointer_features(balabit))


def test_delbot_fractions_of_the_screen_become_pixels() -> None:
    traj = from_delbot([0, 10], ["Move", "Move"], [0.5, 0.25], [0.5, 1.0], 1536, 864)
    assert traj.x.tolist() == [768.0, 384.0]
    assert traj.y.tolist() == [432.0, 864.0]


def test_delbot_unknown_event_is_rejected() -> None:
    with pytest.raises(ValueError, match="Scroll"):
        from_delbot([0], ["Scroll"], [1], [1], 10, 10)


def test_balabit_drops_scroll_and_off_screen_rows() -> None:
    traj = from_balabit(
        [0.0, 0.1, 0.2, 0.3],
        ["NoButton", "Scroll", "NoButton", "NoButton"],
        ["Move", "Down", "Move", "Move"],
        [1.0, 2.0, 65535.0 * 1000, 4.0],
        [1.0, 2.0, 3.0, 4.0],
    )
    assert traj.x.tolist() == [1.0, 4.0]
    assert traj.t_ms.tolist() == pytest.approx([0.0, 300.0])
    assert set(traj.action.tolist()) == {PointerAction.MOVE}


def test_batches_without_pointer_events_give_an_empty_trajectory() -> None:
    batch = events_pb2.EventBatch(
        events=[
            events_pb2.Event(
                timestamp_ms=5, keystroke=events_pb2.KeystrokeEvent(action=events_pb2.KEY_ACTION_UP)
            )
        ]
    )
    assert len(from_event_batches([batch])) == 0
