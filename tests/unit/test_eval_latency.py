"""`rased-eval latency` without a Triton: the errors a user sees before anything is timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rased.eval.cli import main
from rased.eval.latency import percentiles


def test_unreachable_triton_says_to_start_the_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 9 (discard) has no listener here: the connection is refused at once.
    args = ["latency", "--target", "127.0.0.1:9", "--timeout", "2"]
    assert main([*args, "--csv", str(tmp_path / "unused.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rased-eval: error: Triton is not reachable at 127.0.0.1:9 (")
    assert "start it with `make stack-up`" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("option", "value"), [("--requests", "0"), ("--warmup", "-1")])
def test_request_counts_must_make_sense(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["latency", option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}: must" in capsys.readouterr().err


def test_percentiles_of_known_values() -> None:
    # 1..100 ms: the median lies halfway between 50 and 51, the 99th at 99.01 (linear).
    p50, p99 = percentiles([float(v) for v in range(1, 101)])
    assert p50 == pytest.approx(50.5) and p99 == pytest.approx(99.01)
