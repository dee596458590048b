"""`ModelClient` over Triton's gRPC API with `tritonclient.grpc.aio`: timeouts and retries."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from numpy.typing import NDArray
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from rased.services.scoring.ports import BotPrediction, ModelUnavailable

logger = logging.getLogger(__name__)

INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
BOT_CLASS = 1


class TritonModelClient:
    """Runs `model_name` on Triton: one request per batch, each attempt bounded by a timeout."""

    def __init__(
        self,
        url: str,
        model_name: str = "bot_detection",
        timeout_s: float = 2.0,
        attempts: int = 2,
        retry_delay_s: float = 0.1,
    ) -> None:
        """`url` is host:port of Triton's gRPC endpoint; `attempts` counts the first try."""
        self._client = InferenceServerClient(url=url)
        self._model = model_name
        self._timeout = timeout_s
        self._attempts = max(1, attempts)
        self._retry_delay = retry_delay_s
        self._closed = False

    async def bot_probabilities(self, features: NDArray[np.float32]) -> BotPrediction:
        """Return P(bot) per row, retrying a failed request `attempts - 1` times."""
        rows = np.ascontiguousarray(features, dtype=np.float32)
        request = InferInput(INPUT_NAME, list(rows.shape), "FP32")
        request.set_data_from_numpy(rows)
        last: Exception | None = None
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._retry_delay * attempt)
            try:
                result = await self._client.infer(
                    self._model,
                    [request],
                    outputs=[InferRequestedOutput(OUTPUT_NAME)],
                    client_timeout=self._timeout,
                )
            except InferenceServerException as exc:
                last = exc
                logger.debug("Triton attempt %d failed: %s", attempt + 1, exc)
                continue
            output = result.as_numpy(OUTPUT_NAME)
            if output is None or output.shape != (rows.shape[0], 2):
                raise ModelUnavailable(f"{self._model} answered an unexpected output")
            version = result.get_response().model_version or "?"
            return BotPrediction(
                np.asarray(output[:, BOT_CLASS], dtype=np.float64), f"{self._model}:{version}"
            )
        raise ModelUnavailable(f"Triton did not answer ({last})")

    async def close(self) -> None:
        """Close the gRPC channel; safe to call twice."""
        if not self._closed:
            self._closed = True
            await self._client.close()
