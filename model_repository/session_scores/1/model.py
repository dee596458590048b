"""session_scores on Triton's python backend: runs the exported model.onnx with onnxruntime.

Requests arrive dynamically batched; their rows are scored in one onnxruntime call and both
outputs (scores and contributions) are split back per request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

# Provided by Triton's python backend stub at run time; not installable from PyPI.
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

_MODEL = Path(__file__).with_name("model.onnx")
_OUTPUTS = ("scores", "contributions")


class TritonPythonModel:
    """Score session-versus-profile feature rows with the session_scores model."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the ONNX model once per instance."""
        options = ort.SessionOptions()
        # One Triton instance per core budget: keep onnxruntime from spawning a pool per call.
        options.intra_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(_MODEL), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer every request of the batch with its rows' scores and contributions."""
        inputs = [
            pb_utils.get_input_tensor_by_name(r, "features").as_numpy().astype(np.float32)
            for r in requests
        ]
        outputs = self._session.run(list(_OUTPUTS), {"features": np.concatenate(inputs, axis=0)})
        responses = []
        start = 0
        for rows in inputs:
            stop = start + len(rows)
            tensors = [
                pb_utils.Tensor(name, np.asarray(values[start:stop], dtype=np.float32))
                for name, values in zip(_OUTPUTS, outputs, strict=True)
            ]
            start = stop
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
