"""`ModelClient` that runs the repository's ONNX file in-process with onnxruntime."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rased.eval.onnx_model import OnnxClassifier
from rased.features.pointer import POINTER_FEATURE_NAMES
from rased.services.scoring.ports import BotPrediction


class OnnxModelClient:
    """The same bot_detection model Triton serves, run in this process (off the event loop)."""

    def __init__(self, path: Path, model_name: str = "bot_detection") -> None:
        """Load `path` (e.g. model_repository/bot_detection/1/model.onnx).

        Raises:
            ModelError: the file is missing or was trained on other features.
        """
        self._classifier = OnnxClassifier(path, POINTER_FEATURE_NAMES)
        # The version folder's name, as Triton reports it.
        self._version = f"{model_name}:{path.parent.name}"

    async def bot_probabilities(self, features: NDArray[np.float32]) -> BotPrediction:
        """Return P(bot) per row."""
        rows = np.asarray(features, dtype=np.float64)
        probabilities = await asyncio.to_thread(self._classifier.probabilities, rows)
        return BotPrediction(probabilities, self._version)

    async def close(self) -> None:
        """Nothing to release."""
