"""The local Triton serves the repository's `stack_check` model over gRPC (KServe v2)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from rased.devstack.base import ManagedServer

MODEL = "stack_check"


@pytest.fixture
async def client(triton_server: ManagedServer) -> AsyncIterator[InferenceServerClient]:
    """A gRPC client of the running Triton, closed after the test."""
    settings = triton_server.settings
    client = InferenceServerClient(url=f"{settings.host}:{settings.triton_grpc_port}")
    yield client
    await client.close()


async def test_inference_doubles_a_batch_of_two_rows(client: InferenceServerClient) -> None:
    """A batch of two rows goes through the python backend and comes back doubled."""
    rows = np.array([[1.0, -2.5, 0.0], [3.25, 100.0, -0.125]], dtype=np.float32)
    request = InferInput("INPUT", list(rows.shape), "FP32")
    request.set_data_from_numpy(rows)

    result = await client.infer(
        MODEL, [request], outputs=[InferRequestedOutput("OUTPUT")], client_timeout=30
    )

    output = result.as_numpy("OUTPUT")
    assert output.dtype == np.float32
    assert output.shape == (2, 3)
    np.testing.assert_array_equal(output, rows * 2)


async def test_model_metadata_describes_its_tensors(client: InferenceServerClient) -> None:
    """The model's metadata names its input and output with their types and batched shapes."""
    metadata = await client.get_model_metadata(MODEL, as_json=True, client_timeout=10)

    assert metadata["name"] == MODEL
    assert metadata["platform"] == "python"
    # max_batch_size > 0, so Triton prepends the batch dimension (-1) to the configured dims.
    tensors = {t["name"]: (t["datatype"], t["shape"]) for t in metadata["inputs"]}
    assert tensors == {"INPUT": ("FP32", ["-1", "-1"])}
    tensors = {t["name"]: (t["datatype"], t["shape"]) for t in metadata["outputs"]}
    assert tensors == {"OUTPUT": ("FP32", ["-1", "-1"])}
