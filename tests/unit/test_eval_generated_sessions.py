"""bot_detection's measurement on generated sessions: rows, AUCs and per-case figures."""

from __future__ import annotations

import numpy as np
import pytest

from rased.eval.generated_sessions import PointerRows, format_report, pointer_rows, score_report
from rased.features.adapters import from_event_batches
from rased.features.pointer import BOT_FEATURE_NAMES, bot_features
from rased.training import synthetic_sessions


def rows_of(labels: list[str], cases: list[str]) -> PointerRows:
    n = len(labels)
    return PointerRows(
        np.zeros((n, len(BOT_FEATURE_NAMES))),
        np.array(labels),
        np.array(cases),
        np.full(n, 50),
        skipped=3,
    )


def test_score_report_computes_the_aucs_and_distributions_it_names() -> None:
    rows = rows_of(
        ["human", "human", "human", "takeover", "bot", "bot"],
        ["owner", "owner", "owner_new_device", "takeover", "bot", "bot_hidden"],
    )
    # Owners 0.1, 0.5, 0.3; the intruder 0.95 (above every bot); bots 0.4 and 0.9.
    p = np.array([0.1, 0.5, 0.3, 0.95, 0.4, 0.9])
    report = score_report(rows, p)
    # Owner vs bot: pairs (bot > owner) 0.4 > {0.1, 0.3}, 0.9 > all three: 5 of 6.
    assert report.roc_auc_owner_vs_bot == pytest.approx(5 / 6)
    # People vs bot adds the intruder, above both bots: 5 of 8.
    assert report.roc_auc_people_vs_bot == pytest.approx(5 / 8)
    owner = report.per_case["owner"]
    assert owner["sessions"] == 2
    assert owner["median"] == pytest.approx(0.3)
    assert owner["medium_or_above"] == pytest.approx(0.5)  # 0.5 >= 0.40, 0.1 is not
    assert report.per_label["human"]["sessions"] == 3
    assert report.per_label["bot"]["medium_or_above"] == 1.0
    assert set(report.per_case) == {"owner", "owner_new_device", "takeover", "bot", "bot_hidden"}
    assert report.skipped_sessions == 3
    lines = format_report(report)
    assert lines[0].startswith(
        "ROC AUC owner vs bot 0.8333  people (owners and intruders) vs bot 0.6250"
    )
    assert any(line.split()[:2] == ["owner", "2"] for line in lines)


def test_score_report_without_bots_has_no_auc_and_checks_lengths() -> None:
    rows = rows_of(["human", "takeover"], ["owner", "takeover"])
    report = score_report(rows, np.array([0.2, 0.3]))
    assert report.roc_auc_owner_vs_bot is None
    assert report.roc_auc_people_vs_bot is None
    assert "owner vs bot n/a" in format_report(report)[0]
    with pytest.raises(ValueError, match="2 sessions but 3 scores"):
        score_report(rows, np.array([0.2, 0.3, 0.4]))


def test_pointer_rows_are_the_workers_trajectories_with_enough_events() -> None:
    sessions = synthetic_sessions.generate_sessions(6, 8, seed=5, bot_rate=0.4)
    rows = pointer_rows(sessions, min_events=10)
    kept = [s for s in sessions if from_event_batches(s.batches).t_ms.size >= 10]
    assert 0 < len(kept) < len(sessions)  # phones and DOM-clicking scripts move no pointer
    assert rows.skipped == len(sessions) - len(kept)
    assert rows.label.tolist() == [s.label for s in kept]
    assert rows.case.tolist() == [s.truth.case for s in kept]
    assert np.array_equal(rows.x[0], bot_features(from_event_batches(kept[0].batches)))
    assert rows.is_bot.tolist() == [int(s.label == "bot") for s in kept]
    assert pointer_rows([]).x.shape == (0, len(BOT_FEATURE_NAMES))
