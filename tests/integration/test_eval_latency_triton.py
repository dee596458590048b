"""`rased-eval latency` against the real Triton: one transaction per request, timed."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from rased.devstack.base import ManagedServer
from rased.devstack.settings import repository_root
from rased.eval.cli import main
from rased.features.trajectory import PointerAction
from rased.training.synthetic_bots import FAMILIES, generate

_EVENTS = {PointerAction.MOVE: "Move", PointerAction.DOWN: "Pressed", PointerAction.UP: "Released"}
LINE = re.compile(
    r"^  (?P<name>features \(rased\.features\)|Triton round trip|features \+ round trip)\s+"
    r"(?P<p50>\d+\.\d{3})\s+(?P<p99>\d+\.\d{3})\s+(?P<mean>\d+\.\d{3})\s+(?P<max>\d+\.\d{3})$",
    re.MULTILINE,
)


def delbot_file(path: Path) -> int:
    """Write a real person's DELBOT session and one scripted bot per family; return sessions."""
    sample = repository_root() / "model_repository" / "bot_detection" / "smoke_human_session.csv"
    person = list(csv.DictReader(ln for ln in sample.read_text().splitlines() if ln[0] != "#"))
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["label", "source", "session", "res_w", "res_h", "t", "event", "x", "y"])
        for r in person:
            writer.writerow(
                ["human", "human_pc1", "h1", 1920, 1080, r["t_ms"], r["event"], r["x"], r["y"]]
            )
        rng = np.random.default_rng(11)
        for family in FAMILIES:
            bot = generate(family, rng)
            for t, x, y, a in zip(bot.t_ms, bot.x, bot.y, bot.action, strict=True):
                writer.writerow(["bot", family, f"b-{family}", 1920, 1080, t, _EVENTS[a], x, y])
    return 1 + len(FAMILIES)


def test_latency_reports_percentiles_per_transaction(
    triton_server: ManagedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = triton_server.settings
    target = f"{settings.host}:{settings.triton_grpc_port}"
    sessions = delbot_file(tmp_path / "delbot.csv")
    args = ["latency", "--target", target, "--csv", str(tmp_path / "delbot.csv")]
    assert main([*args, "--requests", "60", "--warmup", "5"]) == 0
    out = capsys.readouterr()
    assert f"bot_detection through Triton at {target} (gRPC, instances KIND_CPU)" in out.out
    assert f"60 requests of one transaction each after 5 warm-up; rows from {sessions}" in out.out
    rows = {m["name"]: m for m in LINE.finditer(out.out)}
    assert len(rows) == 3, out.out
    for m in rows.values():
        p50, p99, mean, high = (float(m[k]) for k in ("p50", "p99", "mean", "max"))
        assert 0 < p50 <= p99 <= high and 0 < mean <= high
    # Every request crossed the network and ran the model: more than a feature row costs.
    trip = float(rows["Triton round trip"]["p50"])
    assert float(rows["features + round trip"]["p50"]) > trip > 0
    assert re.search(r"Triton's own statistics, mean ms per request: queue \d+\.\d{3}", out.out)
    assert "timed 60/60 requests" in out.err
