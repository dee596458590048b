"""`python -m rased.training`: train every model on the shared data and export it to ONNX."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from rased.training.bot_detection import MODEL_NAME, BotTrainingConfig, train_bot_detection
from rased.training.datasets import DatasetError

_REPO = Path(__file__).resolve().parents[3]


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
        help="skip the held-out family/device evaluations (faster, same exported model)",
    )
    args = parser.parse_args(argv)
    cfg = BotTrainingConfig(seed=args.seed, held_out_evaluation=not args.skip_held_out)
    try:
        report = train_bot_detection(
            args.data_dir / "delbot_mouse" / "train.csv.gz", args.model_repository, cfg, _log
        )
    except DatasetError as exc:
        print(f"python -m rased.training: error: {exc}", file=sys.stderr)
        return 2
    report_path = args.model_repository / MODEL_NAME / "training_report.json"
    report_path.write_text(json.dumps(asdict(report), indent=2, sort_keys=True) + "\n")
    _log(f"wrote {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
