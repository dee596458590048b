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
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.calibration import CalibratedClassifierCV

INPUT_NAME = "features"
PROBABILITIES = "probabilities"
# Triton's onnxruntime backend and the python backend both read opset 17.
_OPSET = 17
# float32 inference in onnxruntime against float64 in scikit-learn.
_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported model does not reproduce the fitted one."""


def export_classifier(
    model: CalibratedClassifierCV,
    feature_names: Sequence[str],
    path: Path,
    check_rows: NDArray[np.float64],
    metadata: Mapping[str, str],
) -> None:
    """Write `model` as ONNX to `path`: input `features` [N, F] float32, output `probabilities`.

    `model` is a binary classifier calibrated with method="sigmoid", ensemble=False (how
    bot_detection is fitted). The feature names and `metadata` go into the file's
    metadata, so a reader can check it feeds the columns in the order the model was
    trained on.

    Raises:
        ExportError: the model is not of that form, or onnxruntime's probabilities differ
            from scikit-learn's on `check_rows`.
    """
    proto = _platt_calibrated(model, len(feature_names))
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


def _converted(model: Any, features: int) -> onnx.ModelProto:
    """Return skl2onnx's graph of `model`: outputs `label` and the class probabilities."""
    proto: onnx.ModelProto = to_onnx(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, features]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": _OPSET, "ai.onnx.ml": 3},
    )
    return proto


def _platt_calibrated(model: CalibratedClassifierCV, features: int) -> onnx.ModelProto:
    """Return the graph of a binary, sigmoid-calibrated classifier fitted with ensemble=False.

    skl2onnx converts a calibrated random forest but not calibrated extremely randomized
    trees (it asks them for a decision function they lack), so the calibration is written
    here: P(class 1) = sigmoid(-(a * p + b)) of the trees' class-1 probability p, the
    formula scikit-learn's sigmoid calibrator applies.

    Raises:
        ExportError: the model is not of that form.
    """
    calibrated = model.calibrated_classifiers_
    if len(calibrated) != 1 or model.method != "sigmoid" or len(model.classes_) != 2:
        raise ExportError(
            "only a binary classifier calibrated with method='sigmoid', ensemble=False exports"
        )
    (calibrator,) = calibrated[0].calibrators
    proto = _converted(calibrated[0].estimator, features)
    graph = proto.graph
    # The trees' own outputs get other names: this graph's outputs take theirs.
    renamed = {o.name: f"trees_{o.name}" for o in graph.output}
    for node in graph.node:
        node.output[:] = [renamed.get(name, name) for name in node.output]
    trees = renamed[graph.output[-1].name]
    del graph.output[:]
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], dtype=np.int64), "platt_column"),
            numpy_helper.from_array(np.array([calibrator.a_], dtype=np.float32), "platt_a"),
            numpy_helper.from_array(np.array([calibrator.b_], dtype=np.float32), "platt_b"),
            numpy_helper.from_array(np.array([1.0], dtype=np.float32), "platt_one"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Gather", [trees, "platt_column"], ["platt_p"], axis=1),
            helper.make_node("Mul", ["platt_p", "platt_a"], ["platt_ap"]),
            helper.make_node("Add", ["platt_ap", "platt_b"], ["platt_z"]),
            helper.make_node("Neg", ["platt_z"], ["platt_minus_z"]),
            helper.make_node("Sigmoid", ["platt_minus_z"], ["platt_bot"]),
            helper.make_node("Sub", ["platt_one", "platt_bot"], ["platt_person"]),
            helper.make_node("Concat", ["platt_person", "platt_bot"], [PROBABILITIES], axis=1),
            helper.make_node("ArgMax", [PROBABILITIES], ["label"], axis=1, keepdims=0),
        ]
    )
    graph.output.extend(
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, [None, 2]),
        ]
    )
    onnx.checker.check_model(proto)
    return proto


def run_probabilities(path: Path, rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return class-1 probabilities of the ONNX classifier at `path` for `rows`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run([PROBABILITIES], {INPUT_NAME: rows.astype(np.float32)})
    return np.asarray(probabilities, dtype=np.float64)[:, 1]
