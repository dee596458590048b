"""Desktop people's windows (Balabit layout) for bot_detection, and `rased-eval bot-people`.

The Balabit data states no licence and is not copied here: these tests write sessions in
its layout from the DELBOT slice's people (MIT licence, tests/data/README.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from balabit_layout import balabit_people

from rased.eval.cli import main
from rased.features.pointer import BOT_FEATURE_NAMES
from rased.training.datasets import DatasetError
from rased.training.desktop_people import (
    format_people_report,
    people_report,
    people_windows,
)


def test_windows_cut_every_session_at_each_size(tmp_path: Path) -> None:
    events = balabit_people(tmp_path)
    log: list[str] = []
    windows = people_windows(tmp_path, log.append, sizes=(10, 20))
    assert windows.x.shape == (len(windows), len(BOT_FEATURE_NAMES))
    assert np.isfinite(windows.x).all()
    assert set(windows.user.tolist()) == {"user0", "user1"}
    assert set(windows.size.tolist()) == {10, 20}
    # Whole windows only: at most events // size of each size, a short tail left out.
    assert (windows.size == 10).sum() <= events // 10
    assert (windows.size == 20).sum() <= events // 20
    assert (windows.size == 10).sum() >= events // 10 - 6
    assert any("read 6/6 sessions" in m for m in log)


def test_sampling_is_seeded_and_of_users_splits(tmp_path: Path) -> None:
    balabit_people(tmp_path)
    a = people_windows(tmp_path, lambda _: None, sizes=(10,), sample=7, seed=3)
    b = people_windows(tmp_path, lambda _: None, sizes=(10,), sample=7, seed=3)
    c = people_windows(tmp_path, lambda _: None, sizes=(10,), sample=7, seed=4)
    assert len(a) == 7 and np.array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    assert set(a.of_users(["user0"]).user.tolist()) <= {"user0"}
    assert len(a.of_users(["user0"])) + len(a.of_users(["user0"], keep=False)) == 7


def test_sessions_too_short_for_a_window_fail_clearly(tmp_path: Path) -> None:
    balabit_people(tmp_path, users=1, sessions_per_user=1)
    with pytest.raises(DatasetError, match="no session has 100000 pointer events"):
        people_windows(tmp_path, lambda _: None, sizes=(100000,))
    with pytest.raises(DatasetError, match="no such folder"):
        people_windows(tmp_path / "missing", lambda _: None)


def test_report_counts_false_alarms_at_the_risk_thresholds() -> None:
    report = people_report(np.array([0.0, 0.1, 0.39, 0.40, 0.64, 0.65, 0.9, 0.2, 0.3, 0.0]))
    assert report.windows == 10
    assert report.medium_or_more == pytest.approx(0.4)
    assert report.high_or_more == pytest.approx(0.2)
    line = format_people_report(report)
    assert "10 windows" in line and "MEDIUM or more (>= 0.40) 40.0%" in line
    assert "HIGH or more (>= 0.65) 20.0%" in line
    assert format_people_report(people_report(np.zeros(0))) == "no windows scored"


def test_bot_people_prints_false_alarms_overall_and_per_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    balabit_people(tmp_path)
    assert main(["bot-people", "--dir", str(tmp_path), "--window", "20"]) == 0
    out = capsys.readouterr()
    match = re.search(r"^all\s+(\d+) windows: median P\(bot\) (\d\.\d{3})", out.out, re.M)
    assert match, out.out
    assert int(match.group(1)) == len(people_windows(tmp_path, lambda _: None, sizes=(20,)))
    assert 0.0 <= float(match.group(2)) <= 1.0
    assert re.search(r"^\s+user0\s+\d+ windows", out.out, re.M)
    assert re.search(r"^\s+user1\s+\d+ windows", out.out, re.M)
    assert "desktop people: read 6/6 sessions" in out.err


def test_bot_people_bad_input_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bot-people", "--dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "rased-eval: error:" in err and "no such folder" in err
    balabit_people(tmp_path, users=1, sessions_per_user=1)
    assert main(["bot-people", "--dir", str(tmp_path), "--window", "100000"]) == 2
    assert "no session has 100000 pointer events" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bot-people", "--dir", str(tmp_path), "--window", "0"])
