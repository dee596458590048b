"""bot_detection on generated SDK sessions: P(bot) per case, ROC AUC of people against bots.

The sessions come from `rased.training.synthetic_sessions` (seeded): owners, takeovers (a
person, just not the owner) and bots filling a form. Each session is scored as the scoring
worker scores a transaction: the trajectory of its pointer events
(`rased.features.adapters.from_event_batches`), its bot features, and the model only with at
least `MIN_MODEL_POINTER_EVENTS` pointer events (phones tap and swipe: no pointer events; so
do scripts that click through the DOM).

Nothing here is a measurement of real traffic: the generator's assumptions set what the
people's and the scripts' pointers do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from rased.eval.metrics import has_both_classes, roc_auc
from rased.features.adapters import from_event_batches
from rased.features.pointer import BOT_FEATURE_NAMES, bot_features
from rased.features.trajectory import FloatArray
from rased.scoring.rules import MIN_MODEL_POINTER_EVENTS, RISK_THRESHOLDS
from rased.training.synthetic_sessions import SyntheticSession, generate_sessions

# The population `rased-eval bot-sessions` and the training report score by default:
# session_scores' held-out population seed, with more bots than the live-like 10% so the
# AUC rests on a few hundred scripts. bot_detection never trains on this seed.
EVAL_SEED = 43
EVAL_USERS = 100
EVAL_SESSIONS_PER_USER = 12
EVAL_BOT_RATE = 0.3
EVAL_TAKEOVER_RATE = 0.1
# P(bot) from which the worker's risk level is at least MEDIUM (bot_detection's weight is 1).
MEDIUM_FROM = min(threshold for threshold, _ in RISK_THRESHOLDS)


@dataclass(frozen=True)
class PointerRows:
    """The generated sessions the model scores: bot features, label and case of each."""

    x: FloatArray  # [sessions, len(BOT_FEATURE_NAMES)]
    label: NDArray[np.str_]  # "human" (the owner), "bot" or "takeover"
    case: NDArray[np.str_]  # SessionTruth.case, e.g. "owner_new_device"
    events: NDArray[np.int64]  # pointer events per session
    skipped: int  # sessions with too few pointer events for the model

    @property
    def is_bot(self) -> NDArray[np.int64]:
        """1 for a script's session, 0 for a person's (owner or intruder)."""
        return np.asarray(self.label == "bot", dtype=np.int64)


@dataclass
class GeneratedBotReport:
    """bot_detection's scores on generated sessions (see the module docstring)."""

    roc_auc_owner_vs_bot: float | None = None
    roc_auc_people_vs_bot: float | None = None
    # Per case and per label: sessions, P(bot) percentiles, share at MEDIUM risk or above.
    per_case: dict[str, dict[str, float]] = field(default_factory=dict)
    per_label: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped_sessions: int = 0


def pointer_rows(
    sessions: Sequence[SyntheticSession], min_events: int = MIN_MODEL_POINTER_EVENTS
) -> PointerRows:
    """Return the bot features of the sessions with at least `min_events` pointer events."""
    rows: list[FloatArray] = []
    labels: list[str] = []
    cases: list[str] = []
    events: list[int] = []
    for s in sessions:
        trajectory = from_event_batches(s.batches)
        if trajectory.t_ms.size < min_events:
            continue
        rows.append(bot_features(trajectory))
        labels.append(s.label)
        cases.append(s.truth.case)
        events.append(int(trajectory.t_ms.size))
    x = np.vstack(rows) if rows else np.zeros((0, len(BOT_FEATURE_NAMES)))
    return PointerRows(
        x,
        np.array(labels, dtype=np.str_),
        np.array(cases, dtype=np.str_),
        np.array(events, dtype=np.int64),
        len(sessions) - len(rows),
    )


def evaluation_rows(
    seed: int = EVAL_SEED,
    users: int = EVAL_USERS,
    sessions_per_user: int = EVAL_SESSIONS_PER_USER,
    bot_rate: float = EVAL_BOT_RATE,
) -> PointerRows:
    """Return the pointer rows of a generated evaluation population (seeded)."""
    sessions = generate_sessions(users, sessions_per_user, seed, bot_rate, EVAL_TAKEOVER_RATE)
    return pointer_rows(sessions)


def _distribution(p: FloatArray) -> dict[str, float]:
    p10, p50, p90 = np.percentile(p, [10, 50, 90])
    return {
        "sessions": float(p.size),
        "p10": float(p10),
        "median": float(p50),
        "p90": float(p90),
        "medium_or_above": float((p >= MEDIUM_FROM).mean()),
    }


def score_report(
    rows: PointerRows, p: FloatArray, skipped: int | None = None
) -> GeneratedBotReport:
    """Return the report of P(bot) `p` (one per row of `rows`).

    Owner against bot: the account owner's sessions (label "human") against the scripts';
    people against bot: owners and intruders (takeovers are people too) against the scripts.
    An AUC is None where a class is missing.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    if p.size != rows.label.size:
        raise ValueError(f"{rows.label.size} sessions but {p.size} scores")
    report = GeneratedBotReport(skipped_sessions=rows.skipped if skipped is None else skipped)
    owner_or_bot = rows.label != "takeover"
    if has_both_classes(rows.is_bot[owner_or_bot]):
        report.roc_auc_owner_vs_bot = roc_auc(rows.is_bot[owner_or_bot], p[owner_or_bot])
    if has_both_classes(rows.is_bot):
        report.roc_auc_people_vs_bot = roc_auc(rows.is_bot, p)
    for case in sorted(set(rows.case.tolist())):
        report.per_case[case] = _distribution(p[rows.case == case])
    for label in sorted(set(rows.label.tolist())):
        report.per_label[label] = _distribution(p[rows.label == label])
    return report


def format_report(report: GeneratedBotReport) -> list[str]:
    """Return the report as printable lines (AUCs, then a table per case and label)."""

    def auc(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    lines = [
        f"ROC AUC owner vs bot {auc(report.roc_auc_owner_vs_bot)}  "
        f"people (owners and intruders) vs bot {auc(report.roc_auc_people_vs_bot)}  "
        f"({report.skipped_sessions} sessions with under {MIN_MODEL_POINTER_EVENTS} pointer "
        "events not scored)",
        f"  {'case':<22} {'sessions':>8} {'P(bot) p10':>10} {'median':>7} {'p90':>7} "
        f"{'>= ' + format(MEDIUM_FROM, '.2f'):>7}",
    ]
    for name, d in [
        *report.per_case.items(),
        *(("all " + k, v) for k, v in report.per_label.items()),
    ]:
        lines.append(
            f"  {name:<22} {int(d['sessions']):>8} {d['p10']:>10.3f} {d['median']:>7.3f} "
            f"{d['p90']:>7.3f} {d['medium_or_above']:>7.1%}"
        )
    return lines


__all__ = [
    "EVAL_BOT_RATE",
    "EVAL_SEED",
    "EVAL_SESSIONS_PER_USER",
    "EVAL_USERS",
    "GeneratedBotReport",
    "PointerRows",
    "evaluation_rows",
    "format_report",
    "pointer_rows",
    "score_report",
]
