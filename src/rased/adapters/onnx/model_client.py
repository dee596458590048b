"""`ModelClient` that runs the repository's ONNX files in-process with onnxruntime."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from rased.eval.onnx_model import ModelError, OnnxClassifier
from rased.features.pointer import BOT_FEATURE_NAMES
from rased.features.profile_comparison import SESSION_FEATURE_NAMES, SESSION_SCORES_MODEL
from rased.services.scoring.ports import BotPrediction, SessionPrediction

_INPUT = "features"
_OUTPUTS = ("scores", "contributions")


def repository_sibling(path: Path, model_name: str) -> Path:
    """Return `model_name`'s ONNX file in the repository that holds `path` (same layout)."""
    return path.parents[2] / model_name / path.parent.name / path.name


class OnnxSessionScorer:
    """The session_scores model Triton serves, loaded from its ONNX file."""

    def __init__(self, path: Path) -> None:
        """Load `path` and check it was trained on the features this code computes.

        Raises:
            ModelError: the file is missing or unreadable, or its features differ.
        """
        if not path.is_file():
            raise ModelError(f"{path}: no such model; run `python -m rased.training` first")
        options = ort.SessionOptions()
        # One inference at a time, off the event loop: no thread pool of its own.
        options.intra_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        if json.loads(meta.get("feature_names", "[]")) != list(SESSION_FEATURE_NAMES):
            raise ModelError(
                f"{path}: trained on other features than this code computes; retrain it"
            )

    def run(self, rows: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Return (scores, contributions) of the rows."""
        scores, contributions = self._session.run(list(_OUTPUTS), {_INPUT: rows})
        return np.asarray(scores, dtype=np.float64), np.asarray(contributions, dtype=np.float64)


class OnnxModelClient:
    """The same models Triton serves, run in this process (off the event loop)."""

    def __init__(
        self,
        path: Path,
        model_name: str = "bot_detection",
        session_path: Path | None = None,
        session_model_name: str = SESSION_SCORES_MODEL,
    ) -> None:
        """Load bot_detection from `path` (e.g. model_repository/bot_detection/1/model.onnx)
        and session_scores from `session_path` (default: its sibling in that repository).

        Raises:
            ModelError: a file is missing or was trained on other features.
        """
        self._classifier = OnnxClassifier(path, BOT_FEATURE_NAMES)
        session_path = session_path or repository_sibling(path, session_model_name)
        self._sessions = OnnxSessionScorer(session_path)
        # The version folders' names, as Triton reports them.
        self._version = f"{model_name}:{path.parent.name}"
        self._session_version = f"{session_model_name}:{session_path.parent.name}"

    async def bot_probabilities(self, features: NDArray[np.float32]) -> BotPrediction:
        """Return P(bot) per row."""
        rows = np.asarray(features, dtype=np.float64)
        probabilities = await asyncio.to_thread(self._classifier.probabilities, rows)
        return BotPrediction(probabilities, self._version)

    async def session_scores(self, features: NDArray[np.float32]) -> SessionPrediction:
        """Return the session scores and contributions per row."""
        rows = np.ascontiguousarray(features, dtype=np.float32)
        scores, contributions = await asyncio.to_thread(self._sessions.run, rows)
        return SessionPrediction(scores, contributions, self._session_version)

    async def close(self) -> None:
        """Nothing to release."""
