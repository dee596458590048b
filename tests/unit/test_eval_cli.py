"""`rased-eval` on small slices of the real public data, and on bad input.

The DELBOT slice ships in tests/data (MIT licence, see tests/data/README.md), so those
tests run wherever the repository is cloned; the Balabit data states no licence and is
not copied: its test needs ../shared/data beside the repository.
"""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import pytest

from rased.eval.cli import main
from rased.training.split import is_test

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DELBOT = Path(__file__).resolve().parents[1] / "data" / "delbot_mouse_slice.csv.gz"
BALABIT = DATA / "balabit"

needs_balabit = pytest.mark.skipif(
    not (BALABIT / "labels.csv").is_file(), reason="shared Balabit data not present"
)


def delbot_slice(dest: Path, per_source: int = 6, compress: bool = True) -> int:
    """Write the first test-split sessions of every source; return how many."""
    with gzip.open(DELBOT, "rt", newline="") as src:
        reader = csv.reader(src)
        header = next(reader)
        kept: dict[str, list[str]] = {}
        rows = []
        for row in reader:
            source, session = row[1], row[2]
            chosen = kept.setdefault(source, [])
            if session not in chosen:
                if len(chosen) >= per_source or not is_test(42, source, session):
                    continue
                chosen.append(session)
            rows.append(row)
    opener = gzip.open if compress else open
    with opener(dest, "wt", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return sum(len(v) for v in kept.values())


@pytest.mark.parametrize("compress", [True, False])
def test_bot_prints_metrics_overall_and_per_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], compress: bool
) -> None:
    path = tmp_path / ("slice.csv.gz" if compress else "slice.csv")
    n = delbot_slice(path, compress=compress)
    assert main(["bot", "--csv", str(path)]) == 0
    out = capsys.readouterr()
    assert f"{n} sessions" in out.out
    match = re.search(r"overall\s+ROC AUC (\S+)\s+EER (\S+)\s+ECE (\S+)", out.out)
    assert match, out.out
    auc, eer, ece = (float(v) for v in match.groups())
    assert auc > 0.95 and eer < 0.15 and 0 <= ece < 0.2
    assert re.search(r"circles_bot_gan\s+bot\s+6\s+\d\.\d{4}", out.out)
    assert re.search(r"circles_human_pc2\s+human\s+6\s+\d\.\d{4}", out.out)
    assert "features: " in out.err  # progress goes to stderr


def test_bot_missing_file_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bot", "--csv", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err
    assert "rased-eval: error:" in err and "no such file" in err
    assert "Traceback" not in err


def test_bot_wrong_columns_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("label,session,t,x\nbot,a,0,1\n")
    assert main(["bot", "--csv", str(path)]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) source, res_w, res_h, event, y" in err


def test_bot_missing_model_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "one.csv"
    path.write_text("label,source,session,res_w,res_h,t,event,x,y\nbot,s,a,10,10,0,Move,1,1\n")
    assert main(["bot", "--csv", str(path), "--model-repository", str(tmp_path)]) == 2
    assert "no such model" in capsys.readouterr().err


def balabit_slice(dest: Path, users: int = 3, train_rows: int = 3000, test_rows: int = 800) -> None:
    labels: dict[str, str] = {}
    for line in (BALABIT / "labels.csv").read_text().split()[1:]:
        name, value = line.split(",")
        labels[name] = value
    chosen_labels = []
    for user_dir in sorted((BALABIT / "training_files").iterdir())[:users]:
        for path in sorted(user_dir.iterdir())[:3]:
            _copy_head(path, dest / "train" / user_dir.name / path.name, train_rows)
        tests = sorted((BALABIT / "test_files_labelled" / user_dir.name).iterdir())
        legal = [p for p in tests if labels[p.name.split(".")[0]] == "0"][:2]
        illegal = [p for p in tests if labels[p.name.split(".")[0]] == "1"][:2]
        for path in legal + illegal:
            _copy_head(path, dest / "test" / user_dir.name / path.name, test_rows)
            chosen_labels.append(f"{path.name.split('.')[0]},{labels[path.name.split('.')[0]]}")
    (dest / "labels.csv").write_text("filename,is_illegal\n" + "\n".join(chosen_labels) + "\n")


def _copy_head(src: Path, dest: Path, rows: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(src, "rt") as fin, gzip.open(dest, "wt") as fout:
        for i, line in enumerate(fin):
            if i > rows:
                break
            fout.write(line)


@needs_balabit
def test_takeover_prints_auc_and_eer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    balabit_slice(tmp_path)
    args = ["takeover", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test")]
    assert main([*args, "--labels", str(tmp_path / "labels.csv")]) == 0
    out = capsys.readouterr()
    match = re.search(r"ROC AUC (\S+) \(published reference 0.92\)\s+EER (\S+)", out.out)
    assert match, out.out
    assert 0.0 <= float(match.group(1)) <= 1.0
    assert "12 sessions (6 illegal)" in out.out
    assert "takeover: profile 3/3" in out.err


def test_takeover_bad_input_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "labels.csv").write_text("filename,is_illegal\nsession_1,0\n")
    (tmp_path / "empty").mkdir()
    base = ["takeover", "--train", str(tmp_path / "missing"), "--test", str(tmp_path / "empty")]
    assert main([*base, "--labels", str(tmp_path / "labels.csv")]) == 2
    assert "no <user>/<session> files" in capsys.readouterr().err
    assert main([*base, "--labels", str(tmp_path / "nolabels.csv")]) == 2
    assert "nolabels.csv: no such file" in capsys.readouterr().err


def test_bot_sessions_prints_aucs_and_cases(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bot-sessions", "--users", "6", "--sessions-per-user", "8", "--seed", "5"]
    assert main([*args, "--bot-rate", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "seed 5, 6 users x 8" in out
    assert re.search(r"ROC AUC owner vs bot \d\.\d{4}  people .* vs bot \d\.\d{4}", out), out
    assert re.search(r"^\s+owner\s+\d+\s+\d\.\d{3}", out, re.MULTILINE), out
    assert re.search(r"^\s+all bot\s+\d+", out, re.MULTILINE), out


def test_bot_sessions_rejects_a_bad_bot_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bot-sessions", "--bot-rate", "1.5"])
    assert "must be between 0 and 0.9" in capsys.readouterr().err
