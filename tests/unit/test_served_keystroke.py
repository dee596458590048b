"""The served keystroke_dynamics score on CMU-format typing: replay, layout, model checks."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from rased.eval.cli import main
from rased.eval.onnx_model import ModelError
from rased.eval.served_keystroke import KeyLayout, SessionScoresModel, repetition_session
from rased.features.profile_comparison import observe
from rased.training.datasets import DatasetError
from rased.training.synthetic_sessions import cmu_header

SMALL = Path(__file__).resolve().parents[1] / "data" / "cmu_keystroke_small.csv.gz"


def test_a_repetition_replays_as_the_sdk_records_typing() -> None:
    features = cmu_header()[3:]
    layout = KeyLayout.of(features)
    assert layout.keys == ("period", "t", "i", "e", "five", "Shift.r", "o", "a", "n", "l", "Return")
    rng = np.random.default_rng(3)
    timings = np.zeros(len(features))
    holds = rng.uniform(0.06, 0.14, len(layout.holds))
    gaps = rng.uniform(0.15, 0.40, len(layout.gaps))
    timings[list(layout.holds)] = holds
    timings[list(layout.gaps)] = gaps
    compiled = repetition_session(layout, timings, "s-1", 1_700_000_000_000)
    assert compiled.session_id == "s-1" and compiled.event_count == 22
    seen = observe(compiled)
    assert seen.activity.keystrokes == 11
    rhythm = seen.activity.rhythm
    assert rhythm is not None
    # Median hold and key-to-key latency, to the millisecond the SDK stamps.
    assert math.exp(rhythm[0]) == pytest.approx(np.median(holds) * 1000, abs=1.0)
    assert math.exp(rhythm[1]) == pytest.approx(np.median(gaps) * 1000, abs=1.0)


def test_columns_that_are_not_a_chain_of_keys_are_refused() -> None:
    with pytest.raises(DatasetError, match=re.escape("1 H.* and 0 DD.* columns")):
        KeyLayout.of(["H.a", "UD.a.b"])
    with pytest.raises(DatasetError, match=re.escape("3 H.* and 1 DD.* columns")):
        KeyLayout.of(["H.a", "DD.a.b", "H.b", "H.c"])


def test_model_file_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model"):
        SessionScoresModel(tmp_path / "model.onnx")
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        SessionScoresModel(tmp_path / "model.onnx")


def test_keystroke_without_the_served_model_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keystroke", "--csv", str(SMALL), "--model-repository", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "session_scores/1/model.onnx: no such model" in err
