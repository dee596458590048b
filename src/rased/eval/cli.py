"""`rased-eval`: evaluate Rased's models on any data in the public data sets' formats."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rased.eval.metrics import (
    equal_error_rate,
    expected_calibration_error,
    has_both_classes,
    roc_auc,
)
from rased.eval.onnx_model import ModelError, OnnxClassifier
from rased.features.pointer import POINTER_FEATURE_NAMES, pointer_features
from rased.training.datasets import DatasetError, read_delbot
from rased.training.split import is_test

_REPO = Path(__file__).resolve().parents[3]
_PROGRESS_EVERY = 500
BOT_MODEL = Path("bot_detection") / "1" / "model.onnx"
TAKEOVER_REFERENCE_AUC = 0.92


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fmt(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:.4f}"


def _bot(args: argparse.Namespace) -> int:
    model = OnnxClassifier(args.model_repository / BOT_MODEL, POINTER_FEATURE_NAMES)
    _progress(f"reading {args.csv}")
    sessions = read_delbot(args.csv)
    if args.held_out_split is not None:
        # The sessions `python -m rased.training --seed N` kept out of training.
        sessions = [s for s in sessions if is_test(args.held_out_split, s.source, s.session)]
    if not sessions:
        raise DatasetError(f"{args.csv}: no sessions")
    rows = []
    for i, s in enumerate(sessions, start=1):
        rows.append(pointer_features(s.trajectory))
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


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every `rased-eval` subcommand."""
    parser = argparse.ArgumentParser(
        prog="rased-eval", description="Evaluate Rased's models on labelled behavioral data."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bot = commands.add_parser("bot", help="bot_detection on DELBOT-format sessions")
    bot.add_argument("--csv", type=Path, required=True, help="DELBOT CSV, plain or gzip")
    bot.add_argument(
        "--model-repository",
        type=Path,
        default=_REPO / "model_repository",
        help="folder holding bot_detection/1/model.onnx (default: the repository's)",
    )
    bot.add_argument(
        "--held-out-split",
        type=int,
        metavar="SEED",
        help="score only the sessions training with this seed held out (its test split)",
    )
    take = commands.add_parser(
        "takeover", help="per-user mouse-dynamics profiles on Balabit-format sessions"
    )
    take.add_argument("--train", type=Path, required=True, help="folder of <user>/<session>")
    take.add_argument("--test", type=Path, required=True, help="folder of <user>/<session>")
    take.add_argument("--labels", type=Path, required=True, help="CSV filename,is_illegal")
    take.add_argument("--seed", type=int, default=42, help="seed of the profiles' forests")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `rased-eval`; return 0 on success, 2 on bad input (with a one-line reason)."""
    args = build_parser().parse_args(argv)
    handlers = {"bot": _bot, "takeover": _takeover}
    try:
        return handlers[args.command](args)
    except (DatasetError, ModelError) as exc:
        print(f"rased-eval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
