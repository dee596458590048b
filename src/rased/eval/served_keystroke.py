"""The served keystroke_dynamics score on CMU-format typing, each repetition as an SDK session.

`rased-eval keystroke` measures per-user templates over every key's timings. What the
scoring worker serves is session_scores' keystroke_dynamics, which compares a session's
rhythm summary (median hold and key-to-key latency, and their spreads) with the user's
profile. Here each repetition is replayed as the SDK records typing (a key down and a key
up event at the recorded times), each subject's profile is built from the enrolment
repetitions as the worker builds it (`updated_profile`, one session per repetition), and
the test repetitions are scored through the exported model: the benchmark's protocol,
the served score.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rased.adapters.onnx.model_client import OnnxSessionScorer
from rased.eval.metrics import equal_error_rate
from rased.features.profile_comparison import (
    OUTPUT_SCORES,
    Observation,
    observe,
    session_features,
)
from rased.features.trajectory import FloatArray
from rased.scoring.profile import UserProfile, updated_profile
from rased.training.datasets import DatasetError
from rased.training.keystroke import (
    IMPOSTOR_REPS,
    TEST_REPS,
    TRAIN_REPS,
    KeystrokeData,
    KeystrokeReport,
    check_protocol,
)
from rased.v1 import events_pb2, pipeline_pb2

SESSION_SCORES_ONNX = Path("session_scores") / "1" / "model.onnx"
SCORE = "keystroke_dynamics"
_START_MS = 1_700_000_000_000
_SESSION_GAP_MS = 3_600_000
_FIRST_KEY_MS = 1_000  # after the page opens: a think time like any form's
_PROGRESS_EVERY = 10

Log = Callable[[str], None]


@dataclass(frozen=True)
class KeyLayout:
    """Which timing columns are the keys' holds and the down-down gaps between them."""

    keys: tuple[str, ...]
    holds: tuple[int, ...]  # column of each key's hold (H.key)
    gaps: tuple[int, ...]  # column of each consecutive pair's down-down time (DD.a.b)

    @staticmethod
    def of(features: Sequence[str]) -> KeyLayout:
        """Return the layout of CMU columns: H.k1, DD.k1.k2, UD.k1.k2, H.k2, ...

        Raises:
            DatasetError: the holds and down-down columns do not form one chain of keys.
        """
        holds = [i for i, name in enumerate(features) if name.startswith("H.")]
        gaps = [i for i, name in enumerate(features) if name.startswith("DD.")]
        if len(holds) < 2 or len(gaps) != len(holds) - 1:
            raise DatasetError(
                f"{len(holds)} H.* and {len(gaps)} DD.* columns: replaying typing needs one "
                "hold per key and one down-down time per consecutive pair of keys"
            )
        keys = tuple(features[i][2:] for i in holds)
        return KeyLayout(keys, tuple(holds), tuple(gaps))


def repetition_session(
    layout: KeyLayout, timings: FloatArray, session_id: str, start_ms: int
) -> pipeline_pb2.CompiledTransaction:
    """Return one repetition as the compiled transaction of a session that typed it."""
    events: list[events_pb2.Event] = []
    down = _FIRST_KEY_MS / 1000.0
    for n, (key, hold_at) in enumerate(zip(layout.keys, layout.holds, strict=True)):
        key_id = zlib.crc32(key.encode()) % 1024
        for at, action in (
            (down, events_pb2.KEY_ACTION_DOWN),
            (down + float(timings[hold_at]), events_pb2.KEY_ACTION_UP),
        ):
            events.append(
                events_pb2.Event(
                    timestamp_ms=start_ms + round(at * 1000.0),
                    keystroke=events_pb2.KeystrokeEvent(
                        action=action, key_id=key_id, field_id="password"
                    ),
                )
            )
        if n < len(layout.gaps):
            down += float(timings[layout.gaps[n]])
    events.sort(key=lambda e: e.timestamp_ms)
    batch = events_pb2.EventBatch(
        batch_id=f"{session_id}-b0",
        session_id=session_id,
        transaction_id=f"{session_id}-tx",
        trigger=True,
        events=events,
    )
    return pipeline_pb2.CompiledTransaction(
        session_id=session_id,
        transaction_id=f"{session_id}-tx",
        batches=[batch],
        batch_count=1,
        event_count=len(events),
    )


class SessionScoresModel:
    """The exported session_scores model, run in-process as the worker's ONNX client runs it."""

    def __init__(self, path: Path) -> None:
        """Load the model at `path` and check it reads the features this code computes.

        Raises:
            ModelError: the file is missing or unreadable, or its features differ.
        """
        self._scorer = OnnxSessionScorer(path)
        self._column = OUTPUT_SCORES.index(SCORE)

    def keystroke_scores(self, rows: FloatArray) -> FloatArray:
        """Return the keystroke_dynamics score of each feature row."""
        scores, _ = self._scorer.run(rows.astype(np.float32))
        column: FloatArray = scores[:, self._column]
        return column


def _rows(profile: UserProfile, sessions: Sequence[Observation]) -> FloatArray:
    return np.asarray(
        [session_features(seen.evidence, seen.activity, profile) for seen in sessions],
        dtype=np.float64,
    )


def evaluate_served_keystroke(
    data: KeystrokeData,
    model: SessionScoresModel,
    log: Log,
    train_reps: int = TRAIN_REPS,
    test_reps: int = TEST_REPS,
    impostor_reps: int = IMPOSTOR_REPS,
) -> KeystrokeReport:
    """Return each subject's equal-error rate of the served keystroke_dynamics score.

    Raises:
        DatasetError: fewer than two subjects, too few repetitions, or columns that do not
            describe one chain of keys.
    """
    check_protocol(data, train_reps, test_reps, impostor_reps)
    layout = KeyLayout.of(data.features)
    subjects = list(data.subjects)
    # What each session shows does not depend on whose profile it is compared with: read
    # once, not again for every subject it impersonates.
    sessions: dict[str, list[Observation]] = {}
    for subject in subjects:
        reps = data.subjects[subject]
        sessions[subject] = [
            observe(
                repetition_session(
                    layout, reps[i], f"{subject}-{i:04d}", _START_MS + i * _SESSION_GAP_MS
                )
            )
            for i in range(reps.shape[0])
        ]
    eers: dict[str, float] = {}
    for n, subject in enumerate(subjects, start=1):
        profile = UserProfile()
        for seen in sessions[subject][:train_reps]:
            profile = updated_profile(profile, seen.evidence, seen.activity)
        genuine = model.keystroke_scores(_rows(profile, sessions[subject][-test_reps:]))
        others = [c for o in subjects if o != subject for c in sessions[o][:impostor_reps]]
        impostors = model.keystroke_scores(_rows(profile, others))
        labels = np.r_[np.zeros(genuine.size), np.ones(impostors.size)]
        eers[subject] = equal_error_rate(labels, np.r_[genuine, impostors])
        if n % _PROGRESS_EVERY == 0 or n == len(subjects):
            log(f"scored {n}/{len(subjects)} subjects")
    return KeystrokeReport(len(data.features), eers)
