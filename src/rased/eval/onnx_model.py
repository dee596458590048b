"""Loading an exported classifier from the model repository and running it with onnxruntime."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

INPUT_NAME = "features"
PROBABILITIES = "probabilities"


class ModelError(RuntimeError):
    """The model file is missing or does not match the features this code computes."""


class OnnxClassifier:
    """A binary classifier exported by `python -m rased.training`."""

    def __init__(self, path: Path, feature_names: Sequence[str]) -> None:
        """Load the model at `path` and check it was trained on `feature_names`, in order.

        Raises:
            ModelError: the file is missing or unreadable, or its features differ.
        """
        if not path.is_file():
            raise ModelError(f"{path}: no such model; run `python -m rased.training` first")
        try:
            self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        trained_on = json.loads(meta.get("feature_names", "[]"))
        if list(trained_on) != list(feature_names):
            raise ModelError(
                f"{path}: trained on other features than this code computes; retrain it"
            )
        self.path = path

    def probabilities(self, rows: NDArray[np.float64]) -> NDArray[np.float64]:
        """Return the class-1 probability of each row."""
        if not len(rows):
            return np.zeros(0)
        (out,) = self._session.run([PROBABILITIES], {INPUT_NAME: rows.astype(np.float32)})
        return np.asarray(out, dtype=np.float64)[:, 1]
