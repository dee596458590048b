"""stack_check: doubles its input, to prove the local Triton path end to end.

This is NOT a fraud scorer: it exists only so the local stack and its tests can run a real
inference through Triton's python backend. The fraud models arrive with the models issue.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Provided by Triton's python backend stub at run time; not installable from PyPI.
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


class TritonPythonModel:
    """Return OUTPUT = INPUT * 2 for every request of a (dynamically batched) call."""

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer each request with its input doubled."""
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            doubled = (values * np.float32(2)).astype(np.float32)
            output = pb_utils.Tensor("OUTPUT", doubled)
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
