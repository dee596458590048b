"""`python -m rased.training`: train every model and export it to ONNX.

bot_detection learns from the shared public data and generated sessions; session_scores
from generated sessions (`rased.training.synthetic_sessions`). Both are seeded: the same
seed writes the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from rased.training import session_scores
from rased.training.bot_detection import MODEL_NAME, BotTrainingConfig, train_bot_detection
from rased.training.datasets import DatasetError

_REPO = Path(__file__).resolve().parents[3]
MODELS = (MODEL_NAME, session_scores.MODEL_NAME)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate on the held-out split and export; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m rased.training", description="Train Rased's models and export them."
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=_REPO.parent / "shared" / "data",
        help="folder of the public data sets (default: ../shared/data beside the repository)",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=_REPO / "model_repository",
        help="where the ONNX files go (default: the repository's model_repository/)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of every random choice")
    parser.add_argument(
        "--skip-held-out",
        action="store_true",
        help="skip bot_detection's held-out family/device evaluations (faster, same model)",
    )
    parser.add_argument(
        "--model",
        action="append",
        choices=MODELS,
        help=f"train only this model (repeatable; default: {', '.join(MODELS)})",
    )
    args = parser.parse_args(argv)
    chosen = args.model or list(MODELS)
    if MODEL_NAME in chosen:
        cfg = BotTrainingConfig(seed=args.seed, held_out_evaluation=not args.skip_held_out)
        try:
            balabit = args.data_dir / "balabit"
            report = train_bot_detection(
                args.data_dir / "delbot_mouse" / "train.csv.gz",
                args.model_repository,
                cfg,
                _log,
                desktop_people=(balabit / "training_files", balabit / "test_files_labelled"),
            )
        except DatasetError as exc:
            print(f"python -m rased.training: error: {exc}", file=sys.stderr)
            return 2
        _write_report(args.model_repository / MODEL_NAME, asdict(report))
    if session_scores.MODEL_NAME in chosen:
        sessions = session_scores.train_session_scores(
            args.model_repository, session_scores.SessionTrainingConfig(seed=args.seed), _log
        )
        _write_report(args.model_repository / session_scores.MODEL_NAME, asdict(sessions))
    return 0


def _write_report(folder: Path, report: dict[str, object]) -> None:
    path = folder / "training_report.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    _log(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
