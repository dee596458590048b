"""`rased-eval keystroke` on CMU-format typing: shipped generated and real files, bad files.

The generated file is `python -m rased.training.synthetic_sessions cmu --subjects 10
--seed 42 --out tests/data/cmu_keystroke_small.csv.gz`: its EER says the evaluation runs
the benchmark's protocol, not how well Rased tells real people apart. The real one is
IIITBh-Big (12 people, 150 repetitions each; data/iiitbh_keystroke/README.md).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import random
import re
from pathlib import Path

import numpy as np
import pytest

from rased.eval.cli import main
from rased.features.keystroke import ScaledManhattan, WhitenedNearestNeighbour
from rased.features.trajectory import FloatArray
from rased.training.datasets import DatasetError
from rased.training.keystroke import check_protocol, read_cmu
from rased.training.synthetic_sessions import cmu_header, write_cmu_csv

SMALL = Path(__file__).resolve().parents[1] / "data" / "cmu_keystroke_small.csv.gz"
IIITBH = Path(__file__).resolve().parents[2] / "data" / "iiitbh_keystroke" / "IIITBh-Big.csv.gz"
IIITBH_SHA256 = "bea2fd94cdc083ef759e477f43e25598ae0501a22fe78db53cbd0e2a3815d503"
SMALL_SUBJECTS, SMALL_SEED = 10, 42
DETECTORS = (
    "scaled Manhattan",
    "scaled Manhattan, filtered",
    "whitened nearest neighbour",
    "served (session_scores)",
)
ROW = re.compile(
    r"^  (?P<name>scaled Manhattan(?:, filtered)?|whitened nearest neighbour"
    r"|served \(session_scores\))"
    r"\s+(?P<mean>\d\.\d{4})\s+(?P<sd>\d\.\d{4})"
    r"\s+(?P<min>\d\.\d{4})\s+(?P<max>\d\.\d{4}) \((?P<worst>s\d{3}|subject\d+)\)$",
    re.MULTILINE,
)


def detector_rows(out: str) -> dict[str, dict[str, float]]:
    """Return each detector's printed mean, sd, min and max."""
    return {
        m["name"]: {k: float(m[k]) for k in ("mean", "sd", "min", "max")} for m in ROW.finditer(out)
    }


def write_cmu(path: Path, subjects: dict[str, FloatArray], compress: bool = False) -> None:
    """Write timing rows (one array of repetitions per subject) in CMU format."""
    opener = gzip.open if compress else open
    with opener(path, "wt", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(cmu_header())
        for subject, reps in subjects.items():
            for i, values in enumerate(reps):
                session, rep = divmod(i, 50)
                writer.writerow([subject, session + 1, rep + 1, *(f"{v:.4f}" for v in values)])


def fail(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `rased-eval keystroke` expecting bad input; return its one-line error."""
    assert main(["keystroke", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("rased-eval: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_shipped_file_is_what_the_generator_writes_with_its_seed(tmp_path: Path) -> None:
    again = tmp_path / "again.csv.gz"
    assert write_cmu_csv(again, SMALL_SUBJECTS, SMALL_SEED) == SMALL_SUBJECTS * 400
    # The CSV itself, byte for byte (gzip's own framing may differ between zlib builds).
    assert gzip.decompress(again.read_bytes()) == gzip.decompress(SMALL.read_bytes())
    assert SMALL.stat().st_size < 1_000_000


def test_keystroke_prints_every_detectors_eer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keystroke", "--csv", str(SMALL)]) == 0
    out = capsys.readouterr()
    assert f"{SMALL_SUBJECTS} subjects, 31 timing features" in out.out
    assert "trained on the first 200 repetitions, tested on the last 200" in out.out
    assert "published best on the real CMU data: 0.096" in out.out
    rows = detector_rows(out.out)
    assert set(rows) == set(DETECTORS), out.out
    for name, row in rows.items():
        # Far from chance (0.5) and not perfect: generated people differ, but not trivially.
        assert 0.02 < row["mean"] < 0.25, (name, row)
        assert row["min"] <= row["mean"] <= row["max"] and row["sd"] > 0
    assert f"scaled Manhattan: scored {SMALL_SUBJECTS}/{SMALL_SUBJECTS} subjects" in out.err


def test_real_typists_file_is_the_documented_copy() -> None:
    text = gzip.decompress(IIITBH.read_bytes())
    assert hashlib.sha256(text).hexdigest() == IIITBH_SHA256
    rows = list(csv.reader(text.decode().splitlines()))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["subject", "sessionIndex", "rep"] and len(header) == 34
    assert len(body) == 1800 and len({r[0] for r in body}) == 12
    # Each key's down-down time is its hold plus the up-down gap: a check on the copy.
    for row in body:
        values = [float(v) for v in row[3:]]
        for j in range(0, 30, 3):
            assert abs(values[j + 1] - values[j] - values[j + 2]) < 2e-6, row[:3]


def test_real_typists_under_the_halved_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["keystroke", "--csv", str(IIITBH), "--train-reps", "75", "--test-reps", "75"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "12 subjects, 31 timing features" in out
    assert "trained on the first 75 repetitions, tested on the last 75 and the first 5" in out
    rows = detector_rows(out)
    # The figures the model card reports for these 12 real people (deterministic).
    assert rows["scaled Manhattan"]["mean"] == pytest.approx(0.0826, abs=5e-5)
    assert rows["scaled Manhattan, filtered"]["mean"] == pytest.approx(0.0860, abs=5e-5)
    assert rows["whitened nearest neighbour"]["mean"] == pytest.approx(0.0743, abs=5e-5)
    assert rows["served (session_scores)"]["mean"] == pytest.approx(0.1955, abs=5e-5)


def test_protocol_sizes_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    error = fail(capsys, "--csv", str(IIITBH), "--train-reps", "75", "--test-reps", "76")
    assert "every subject needs at least 151 (75 to train, 76 to test" in error
    assert "subject0 has 150" in error
    with pytest.raises(SystemExit) as exited:
        main(["keystroke", "--csv", str(IIITBH), "--impostor-reps", "0"])
    assert exited.value.code == 2
    assert "argument --impostor-reps: must be at least 1, got 0" in capsys.readouterr().err


def test_plain_gzip_and_shuffled_files_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = gzip.decompress(SMALL.read_bytes()).decode().splitlines(keepends=True)
    plain, shuffled = tmp_path / "plain.csv", tmp_path / "shuffled.csv"
    plain.write_text("".join(lines))
    body = lines[1:]
    random.Random(3).shuffle(body)
    # "First" and "last" repetitions are in typing order, whatever order the rows are in.
    shuffled.write_text(lines[0] + "".join(body))
    results = []
    for path in (SMALL, plain, shuffled):
        assert main(["keystroke", "--csv", str(path)]) == 0
        results.append(detector_rows(capsys.readouterr().out))
    assert results[0] == results[1] == results[2]


def test_typists_alike_are_at_chance_and_far_apart_are_told_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(5)
    width = len(cmu_header()) - 3
    alike = {f"s{i:03d}": rng.lognormal(np.log(0.1), 0.2, (400, width)) for i in range(8)}
    write_cmu(tmp_path / "alike.csv", alike)
    assert main(["keystroke", "--csv", str(tmp_path / "alike.csv")]) == 0
    for row in detector_rows(capsys.readouterr().out).values():
        assert 0.35 < row["mean"] < 0.65, row
    apart = {
        f"s{i:03d}": rng.lognormal(np.log(0.1 * (i + 1)), 0.02, (400, width)) for i in range(8)
    }
    write_cmu(tmp_path / "apart.csv", apart)
    assert main(["keystroke", "--csv", str(tmp_path / "apart.csv")]) == 0
    for row in detector_rows(capsys.readouterr().out).values():
        assert row["max"] == 0.0, row


def test_filtered_enrolment_ignores_a_hesitation() -> None:
    rng = np.random.default_rng(7)
    # Uniform timings: no usual repetition lies beyond 3 sd, so only the pause is dropped.
    usual = rng.uniform(0.08, 0.12, (200, 5))
    hesitant = np.vstack([usual, [0.1, 0.1, 0.9, 0.1, 0.1]])
    plain, filtered = ScaledManhattan.fit(hesitant), ScaledManhattan.fit_filtered(hesitant)
    reference = ScaledManhattan.fit(usual)
    assert np.allclose(filtered.mean, reference.mean) and np.allclose(filtered.mad, reference.mad)
    # Unfiltered, one pause of 0.8 s widens that key's scale for every later comparison.
    assert plain.mad[2] > 1.3 * reference.mad[2]


def test_whitened_nearest_neighbour_ignores_scales_and_dependent_columns() -> None:
    rng = np.random.default_rng(11)

    def typist(n: int, pace: float) -> FloatArray:
        hold = rng.lognormal(np.log(0.1 * pace), 0.2, (n, 3))
        gap = rng.lognormal(np.log(0.3 * pace), 0.3, (n, 3))
        # UD = DD - H, as in the benchmark: the covariance is singular.
        return np.hstack([hold, gap, gap - hold])

    enrolment = typist(200, 1.0)
    template = WhitenedNearestNeighbour.fit(enrolment)
    assert np.allclose(template.score(enrolment[:5]), 0.0)
    same, stranger = typist(50, 1.0), typist(50, 2.0)
    # Timings in milliseconds instead of seconds: the same distances after whitening.
    in_ms = WhitenedNearestNeighbour.fit(enrolment * 1000)
    assert np.allclose(in_ms.score(same * 1000), template.score(same), rtol=1e-6)
    assert np.median(template.score(stranger)) > 2 * np.median(template.score(same))
    with pytest.raises(ValueError, match="at least two"):
        WhitenedNearestNeighbour.fit(enrolment[:1])
    with pytest.raises(ValueError, match="samples have 4 features, the template 9"):
        template.score(enrolment[:, :4])


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "nope.csv: no such file" in fail(capsys, "--csv", str(tmp_path / "nope.csv"))


def test_wrong_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "delbot.csv"
    path.write_text("label,source,session,t,x,y\nbot,a,b,0,1,1\n")
    error = fail(capsys, "--csv", str(path))
    assert "missing column(s) subject, sessionIndex, rep" in error
    assert "H.*, DD.*, UD.*" in error
    path.write_text("subject,sessionIndex,rep,x\ns002,1,1,0.1\n")
    assert "missing column(s) H.*/DD.*/UD.*" in fail(capsys, "--csv", str(path))
    path.write_text("")
    assert "empty file" in fail(capsys, "--csv", str(path))


def test_non_numeric_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    header = ",".join(cmu_header())
    good = ",".join(["s002", "1", "1", *["0.1"] * 31])
    path.write_text(f"{header}\n{good}\n" + good.replace("0.1", "fast", 1) + "\n")
    assert f"{path}:3: H.period is 'fast', not a number (seconds)" in fail(
        capsys, "--csv", str(path)
    )
    path.write_text(f"{header}\n" + good.replace(",1,1,", ",one,1,", 1) + "\n")
    assert f"{path}:2: sessionIndex is 'one', not an integer" in fail(capsys, "--csv", str(path))
    path.write_text(f"{header}\n" + good.replace("0.1", "nan", 1) + "\n")
    assert "H.period is 'nan', not a finite number" in fail(capsys, "--csv", str(path))
    path.write_text(f"{header}\n" + good.rsplit(",", 2)[0] + "\n")
    assert f"{path}:2: 32 values, the header has 34 columns" in fail(capsys, "--csv", str(path))


def test_too_few_repetitions_or_subjects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    width = len(cmu_header()) - 3
    path = tmp_path / "short.csv.gz"
    reps = {"s002": 400, "s003": 399}
    write_cmu(path, {s: rng.uniform(0.05, 0.3, (n, width)) for s, n in reps.items()}, True)
    error = fail(capsys, "--csv", str(path))
    assert "every subject needs at least 400 (200 to train, 200 to test, 5 to" in error
    assert "s003 has 399" in error
    write_cmu(path, {"s002": rng.uniform(0.05, 0.3, (400, width))}, compress=True)
    assert "need at least two" in fail(capsys, "--csv", str(path))


def test_protocol_sizes_below_one_are_refused() -> None:
    data = read_cmu(SMALL)
    with pytest.raises(DatasetError, match=r"test and impersonate \(got 200, 0 and 5\)"):
        check_protocol(data, 200, 0, 5)
    with pytest.raises(DatasetError, match=r"at least 401 .* 401 to impersonate"):
        check_protocol(data, 200, 200, 401)


def test_truncated_gzip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(SMALL.read_bytes()[:50_000])
    assert "unreadable" in fail(capsys, "--csv", str(path))
