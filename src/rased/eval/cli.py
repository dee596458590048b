"""`rased-eval`: evaluate Rased's models on any data in the public data sets' formats."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

from rased.eval.generated_sessions import (
    EVAL_BOT_RATE,
    EVAL_SEED,
    EVAL_SESSIONS_PER_USER,
    EVAL_USERS,
)
from rased.eval.latency import TritonUnreachable
from rased.eval.metrics import (
    equal_error_rate,
    expected_calibration_error,
    has_both_classes,
    roc_auc,
)
from rased.eval.onnx_model import ModelError, OnnxClassifier
from rased.eval.served_keystroke import (
    SESSION_SCORES_ONNX,
    SessionScoresModel,
    evaluate_served_keystroke,
)
from rased.features.pointer import BOT_FEATURE_NAMES, bot_features
from rased.training.datasets import DatasetError, read_delbot
from rased.training.desktop_people import (
    EVALUATION_WINDOW,
    format_people_report,
    people_report,
    people_windows,
)
from rased.training.keystroke import (
    DETECTORS,
    IMPOSTOR_REPS,
    PUBLISHED_EER,
    PUBLISHED_SD,
    TEST_REPS,
    TRAIN_REPS,
    check_protocol,
    evaluate_keystroke,
    read_cmu,
)
from rased.training.split import is_test

_REPO = Path(__file__).resolve().parents[3]
_SHARED_DELBOT = _REPO.parent / "shared" / "data" / "delbot_mouse" / "train.csv.gz"
_PROGRESS_EVERY = 500
BOT_MODEL = Path("bot_detection") / "1" / "model.onnx"
BOT_MODEL_NAME = "bot_detection"
TAKEOVER_REFERENCE_AUC = 0.92
SERVED_DETECTOR = "served (session_scores)"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tagged(tag: str, message: str) -> None:
    _progress(f"{tag}: {message}")


def _fmt(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:.4f}"


def _bot(args: argparse.Namespace) -> int:
    model = OnnxClassifier(args.model_repository / BOT_MODEL, BOT_FEATURE_NAMES)
    _progress(f"reading {args.csv}")
    sessions = read_delbot(args.csv)
    if args.held_out_split is not None:
        # The sessions `python -m rased.training --seed N` kept out of training.
        sessions = [s for s in sessions if is_test(args.held_out_split, s.source, s.session)]
    if not sessions:
        raise DatasetError(f"{args.csv}: no sessions")
    rows = []
    for i, s in enumerate(sessions, start=1):
        rows.append(bot_features(s.trajectory))
        if i % _PROGRESS_EVERY == 0 or i == len(sessions):
            _progress(f"features: {i}/{len(sessions)} sessions")
    p = model.probabilities(np.vstack(rows))
    y = np.array([s.label for s in sessions])
    sources = np.array([s.source for s in sessions])
    print(
        f"bot_detection on {args.csv}: {y.size} sessions ({int((y == 0).sum())} human, "
        f"{int(y.sum())} bot), model {model.path}"
    )
    if has_both_classes(y):
        print(
            f"overall  ROC AUC {roc_auc(y, p):.4f}  EER {equal_error_rate(y, p):.4f}  "
            f"ECE {expected_calibration_error(y, p):.4f}"
        )
    else:
        print(
            f"overall  ROC AUC    n/a  EER    n/a  ECE {expected_calibration_error(y, p):.4f}"
            "  (one class only)"
        )
    print("per source (against every session of the other class):")
    print(f"  {'source':<28} {'label':<6} {'sessions':>8} {'ROC AUC':>8} {'EER':>7} {'ECE':>7}")
    for src in sorted(set(sources)):
        own = sources == src
        label = int(y[own][0])
        rows_for = own | (y != label)
        auc = eer = None
        if has_both_classes(y[rows_for]):
            auc = roc_auc(y[rows_for], p[rows_for])
            eer = equal_error_rate(y[rows_for], p[rows_for])
        ece = expected_calibration_error(y[own], p[own])
        print(
            f"  {src:<28} {('bot' if label else 'human'):<6} {int(own.sum()):>8} "
            f"{_fmt(auc):>8} {_fmt(eer):>7} {_fmt(ece):>7}"
        )
    return 0


def _bot_sessions(args: argparse.Namespace) -> int:
    from rased.eval.generated_sessions import evaluation_rows, format_report, score_report

    model = OnnxClassifier(args.model_repository / BOT_MODEL, BOT_FEATURE_NAMES)
    _progress(
        f"generating {args.users} users x {args.sessions_per_user} sessions (seed {args.seed})"
    )
    rows = evaluation_rows(args.seed, args.users, args.sessions_per_user, args.bot_rate)
    if not rows.label.size:
        raise DatasetError("no generated session has enough pointer events to score")
    report = score_report(rows, model.probabilities(rows.x))
    print(
        f"bot_detection on generated sessions (rased.training.synthetic_sessions, seed "
        f"{args.seed}, {args.users} users x {args.sessions_per_user}, bot rate "
        f"{args.bot_rate}): {rows.label.size} sessions with pointer events, model {model.path}"
    )
    for line in format_report(report):
        print(line)
    return 0


def _bot_people(args: argparse.Namespace) -> int:
    model = OnnxClassifier(args.model_repository / BOT_MODEL, BOT_FEATURE_NAMES)
    windows = people_windows(args.dir, _progress, sizes=(args.window,))
    p = model.probabilities(windows.x)
    print(
        f"bot_detection on people's sessions in {args.dir} (windows of {args.window} "
        f"pointer events; every one a person's, so each MEDIUM or more is a false alarm), "
        f"model {model.path}"
    )
    print(f"all      {format_people_report(people_report(p))}")
    for user in sorted(set(windows.user.tolist())):
        own = windows.user == user
        print(f"  {user:<12} {format_people_report(people_report(p[own]))}")
    return 0


def _takeover(args: argparse.Namespace) -> int:
    from rased.training.takeover import evaluate_takeover

    report = evaluate_takeover(args.train, args.test, args.labels, _progress, seed=args.seed)
    print(
        f"takeover on {args.test}: {report.sessions} sessions ({report.illegal} illegal), "
        f"profiles from {args.train}"
    )
    print(
        f"ROC AUC {report.roc_auc:.4f} (published reference {TAKEOVER_REFERENCE_AUC})  "
        f"EER {report.eer:.4f}"
    )
    if report.skipped:
        print(
            f"skipped {len(report.skipped)} sessions of users without a profile: "
            + ", ".join(report.skipped[:5])
            + (" ..." if len(report.skipped) > 5 else "")
        )
    return 0


def _keystroke(args: argparse.Namespace) -> int:
    # Load the served model first: a missing file should fail before minutes of templates.
    served = SessionScoresModel(args.model_repository / SESSION_SCORES_ONNX)
    _progress(f"reading {args.csv}")
    data = read_cmu(args.csv)
    check_protocol(data, args.train_reps, args.test_reps, args.impostor_reps)
    _progress(f"{len(data.subjects)} subjects, {len(data.features)} timing features")
    reports = {}
    for name, fit in DETECTORS.items():
        reports[name] = evaluate_keystroke(
            data,
            functools.partial(_tagged, name),
            fit,
            args.train_reps,
            args.test_reps,
            args.impostor_reps,
        )
    reports[SERVED_DETECTOR] = evaluate_served_keystroke(
        data,
        served,
        functools.partial(_tagged, SERVED_DETECTOR),
        args.train_reps,
        args.test_reps,
        args.impostor_reps,
    )
    print(
        f"keystroke_dynamics on {args.csv}: {len(data.subjects)} subjects, "
        f"{len(data.features)} timing features; per subject: trained on the first "
        f"{args.train_reps} repetitions, tested on the last {args.test_reps} and the first "
        f"{args.impostor_reps} of every other subject"
    )
    width = max(len(name) for name in reports)
    print(f"  {'detector':<{width}} {'mean EER':>8} {'sd':>7} {'min':>7} {'max':>7}")
    for name, report in reports.items():
        worst, high = report.worst
        print(
            f"  {name:<{width}} {report.mean:>8.4f} {report.std:>7.4f} "
            f"{report.best[1]:>7.4f} {high:>7.4f} ({worst})"
        )
    print(
        f"published best on the real CMU data: {PUBLISHED_EER} (sd {PUBLISHED_SD}), scaled "
        "Manhattan (Killourhy & Maxion 2009)"
    )
    print(
        f"{SERVED_DETECTOR}: the score the scoring worker serves, each repetition replayed "
        "as an SDK session and the profile built from the training repetitions"
    )
    return 0


def _latency(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from rased.eval.latency import measure, percentiles, probe

    # Ask Triton first: a stopped stack should fail in a second, not after the features.
    asyncio.run(probe(args.target, BOT_MODEL_NAME, args.timeout))
    _progress(f"reading {args.csv}")
    sessions = read_delbot(args.csv)
    if args.held_out_split is not None:
        sessions = [s for s in sessions if is_test(args.held_out_split, s.source, s.session)]
    if not sessions:
        raise DatasetError(f"{args.csv}: no sessions")
    rows, feature_ms = [], []
    for i, s in enumerate(sessions, start=1):
        start = time.perf_counter_ns()
        rows.append(bot_features(s.trajectory))
        feature_ms.append((time.perf_counter_ns() - start) / 1e6)
        if i % _PROGRESS_EVERY == 0 or i == len(sessions):
            _progress(f"features: {i}/{len(sessions)} sessions")
    report = asyncio.run(
        measure(
            args.target,
            np.vstack(rows).astype(np.float32),
            args.requests,
            args.warmup,
            args.timeout,
            _progress,
            BOT_MODEL_NAME,
        )
    )
    # Request i scored row (warmup + i) mod n: its transaction's features plus its trip.
    used = (args.warmup + np.arange(args.requests)) % len(rows)
    total = np.asarray(feature_ms)[used] + report.round_trip_ms
    split = "" if args.held_out_split is None else f", held out by seed {args.held_out_split}"
    print(
        f"{report.model} through Triton at {args.target} (gRPC, instances "
        f"{', '.join(report.instance_kinds) or '?'}): {args.requests} requests of one "
        f"transaction each after {report.warmup} warm-up; rows from {len(sessions)} "
        f"sessions of {args.csv}{split}"
    )
    print(f"  {'per transaction':<28} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'max ms':>8}")
    for name, values in (
        ("features (rased.features)", np.asarray(feature_ms)),
        ("Triton round trip", report.round_trip_ms),
        ("features + round trip", total),
    ):
        p50, p99 = percentiles(values)
        print(
            f"  {name:<28} {p50:>8.3f} {p99:>8.3f} {float(values.mean()):>8.3f} "
            f"{float(values.max()):>8.3f}"
        )
    if report.server_ms:
        stages = ", ".join(f"{k} {v:.3f}" for k, v in report.server_ms.items())
        print(f"Triton's own statistics, mean ms per request: {stages}")
    return 0


def _add_model_repository(command: argparse.ArgumentParser, model: Path = BOT_MODEL) -> None:
    command.add_argument(
        "--model-repository",
        type=Path,
        default=_REPO / "model_repository",
        help=f"folder holding {model.as_posix()} (default: the repository's)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every `rased-eval` subcommand."""
    parser = argparse.ArgumentParser(
        prog="rased-eval", description="Evaluate Rased's models on labelled behavioral data."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bot = commands.add_parser("bot", help="bot_detection on DELBOT-format sessions")
    bot.add_argument("--csv", type=Path, required=True, help="DELBOT CSV, plain or gzip")
    _add_model_repository(bot)
    bot.add_argument(
        "--held-out-split",
        type=int,
        metavar="SEED",
        help="score only the sessions training with this seed held out (its test split)",
    )
    gen = commands.add_parser(
        "bot-sessions",
        help="bot_detection on generated SDK sessions (owners, intruders, bots filling a form)",
    )
    _add_model_repository(gen)
    gen.add_argument(
        "--seed",
        type=int,
        default=EVAL_SEED,
        help=f"generator seed (default {EVAL_SEED}; training never uses it)",
    )
    gen.add_argument("--users", type=_positive, default=EVAL_USERS, help="generated accounts")
    gen.add_argument(
        "--sessions-per-user", type=_positive, default=EVAL_SESSIONS_PER_USER, help="per account"
    )
    gen.add_argument(
        "--bot-rate",
        type=_rate,
        default=EVAL_BOT_RATE,
        help=f"share of sessions after an account's first that are bots (default {EVAL_BOT_RATE})",
    )
    people = commands.add_parser(
        "bot-people",
        help="bot_detection's false alarms on people's Balabit-format sessions",
    )
    people.add_argument("--dir", type=Path, required=True, help="folder of <user>/<session>")
    people.add_argument(
        "--window",
        type=_positive,
        default=EVALUATION_WINDOW,
        help=f"pointer events per scored window (default {EVALUATION_WINDOW})",
    )
    _add_model_repository(people)
    take = commands.add_parser(
        "takeover", help="per-user mouse-dynamics profiles on Balabit-format sessions"
    )
    take.add_argument("--train", type=Path, required=True, help="folder of <user>/<session>")
    take.add_argument("--test", type=Path, required=True, help="folder of <user>/<session>")
    take.add_argument("--labels", type=Path, required=True, help="CSV filename,is_illegal")
    take.add_argument("--seed", type=int, default=42, help="seed of the profiles' forests")
    keys = commands.add_parser(
        "keystroke", help="per-subject typing templates on CMU keystroke-benchmark CSV"
    )
    keys.add_argument(
        "--csv",
        type=Path,
        required=True,
        help="CSV (plain or gzip): subject, sessionIndex, rep, then H.*, DD.*, UD.* seconds",
    )
    keys.add_argument(
        "--train-reps",
        type=_positive,
        default=TRAIN_REPS,
        help=f"each subject's first N repetitions enrol the template (default {TRAIN_REPS})",
    )
    keys.add_argument(
        "--test-reps",
        type=_positive,
        default=TEST_REPS,
        help=f"each subject's last N repetitions are the genuine test (default {TEST_REPS})",
    )
    keys.add_argument(
        "--impostor-reps",
        type=_positive,
        default=IMPOSTOR_REPS,
        help=f"every other subject's first N repetitions are impostors (default {IMPOSTOR_REPS})",
    )
    _add_model_repository(keys, SESSION_SCORES_ONNX)
    lat = commands.add_parser(
        "latency", help="bot_detection inference latency per transaction through Triton"
    )
    lat.add_argument("--target", default="127.0.0.1:8001", help="Triton's gRPC host:port")
    lat.add_argument(
        "--csv",
        type=Path,
        default=_SHARED_DELBOT,
        help="DELBOT CSV whose sessions give the feature rows (default: the shared data's)",
    )
    lat.add_argument(
        "--held-out-split",
        type=int,
        metavar="SEED",
        help="use only the sessions training with this seed held out (its test split)",
    )
    lat.add_argument("--requests", type=_positive, default=1000, help="timed requests")
    lat.add_argument("--warmup", type=_non_negative, default=100, help="untimed requests first")
    lat.add_argument("--timeout", type=float, default=5.0, help="seconds per call to Triton")
    return parser


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 0.9:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.9, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run `rased-eval`; return 0 on success, 2 on bad input (with a one-line reason)."""
    args = build_parser().parse_args(argv)
    handlers = {
        "bot": _bot,
        "bot-sessions": _bot_sessions,
        "bot-people": _bot_people,
        "takeover": _takeover,
        "keystroke": _keystroke,
        "latency": _latency,
    }
    try:
        return handlers[args.command](args)
    except (DatasetError, ModelError, TritonUnreachable) as exc:
        print(f"rased-eval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
