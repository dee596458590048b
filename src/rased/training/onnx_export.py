"""Export of fitted scikit-learn classifiers to ONNX, checked against onnxruntime."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

INPUT_NAME = "features"
PROBABILITIES = "probabilities"
# Triton's onnxruntime backend and the python backend both read opset 17.
_OPSET = 17
# float32 inference in onnxruntime against float64 in scikit-learn.
_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported model does not reproduce the fitted one."""


def export_classifier(
    model: Any,
    feature_names: Sequence[str],
    path: Path,
    check_rows: NDArray[np.float64],
    metadata: Mapping[str, str],
) -> None:
    """Write `model` as ONNX to `path`: input `features` [N, F] float32, output `probabilities`.

    The feature names and `metadata` go into the file's metadata, so a reader can check
    it feeds the columns in the order the model was trained on.

    Raises:
        ExportError: onnxruntime's probabilities differ from scikit-learn's on `check_rows`.
    """
    proto = to_onnx(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, len(feature_names)]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": _OPSET, "ai.onnx.ml": 3},
    )
    _rename_output(proto)
    props = {"feature_names": json.dumps(list(feature_names)), **metadata}
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    got = run_probabilities(path, check_rows)
    want = np.asarray(model.predict_proba(check_rows.astype(np.float32)))[:, 1]
    worst = float(np.abs(got - want).max())
    if worst > _TOLERANCE:
        raise ExportError(f"{path}: ONNX and scikit-learn differ by up to {worst:.2g}")


def _rename_output(proto: onnx.ModelProto) -> None:
    """Name the probability output `probabilities` whatever the converter called it."""
    outputs = [o.name for o in proto.graph.output]
    if PROBABILITIES in outputs:
        return
    old = outputs[-1]
    for node in proto.graph.node:
        node.output[:] = [PROBABILITIES if o == old else o for o in node.output]
    proto.graph.output[-1].name = PROBABILITIES


def run_probabilities(path: Path, rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return class-1 probabilities of the ONNX classifier at `path` for `rows`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run([PROBABILITIES], {INPUT_NAME: rows.astype(np.float32)})
    return np.asarray(probabilities, dtype=np.float64)[:, 1]
