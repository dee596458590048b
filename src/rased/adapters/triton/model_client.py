"""`ModelClient` over Triton's gRPC API with `tritonclient.grpc.aio`: timeouts and retries."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from numpy.typing import NDArray
from tritonclient.grpc import InferInput, InferRequestedOutput, InferResult
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from rased.features.profile_comparison import (
    ANOMALY_SCORES,
    N_SESSION_FEATURES,
    OUTPUT_SCORES,
    SESSION_SCORES_MODEL,
)
from rased.services.scoring.ports import BotPrediction, ModelUnavailable, SessionPrediction

logger = logging.getLogger(__name__)

INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
BOT_CLASS = 1
SCORES_OUTPUT = "scores"
CONTRIBUTIONS_OUTPUT = "contributions"


class TritonModelClient:
    """Runs the models on Triton: one request per batch, each attempt bounded by a timeout."""

    def __init__(
        self,
        url: str,
        model_name: str = "bot_detection",
        timeout_s: float = 2.0,
        attempts: int = 2,
        retry_delay_s: float = 0.1,
        session_model_name: str = SESSION_SCORES_MODEL,
    ) -> None:
        """`url` is host:port of Triton's gRPC endpoint; `attempts` counts the first try.

        `model_name` is the bot_detection model, `session_model_name` the session_scores one.
        """
        self._client = InferenceServerClient(url=url)
        self._model = model_name
        self._session_model = session_model_name
        self._timeout = timeout_s
        self._attempts = max(1, attempts)
        self._retry_delay = retry_delay_s
        self._closed = False

    async def _infer(
        self, model: str, rows: NDArray[np.float32], outputs: tuple[str, ...]
    ) -> InferResult:
        """Return Triton's answer, retrying a failed request `attempts - 1` times."""
        request = InferInput(INPUT_NAME, list(rows.shape), "FP32")
        request.set_data_from_numpy(rows)
        last: Exception | None = None
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._retry_delay * attempt)
            try:
                return await self._client.infer(
                    model,
                    [request],
                    outputs=[InferRequestedOutput(name) for name in outputs],
                    client_timeout=self._timeout,
                )
            except InferenceServerException as exc:
                last = exc
                logger.debug("Triton attempt %d at %s failed: %s", attempt + 1, model, exc)
        raise ModelUnavailable(f"Triton did not answer for {model} ({last})")

    def _version(self, model: str, result: InferResult) -> str:
        return f"{model}:{result.get_response().model_version or '?'}"

    async def bot_probabilities(self, features: NDArray[np.float32]) -> BotPrediction:
        """Return P(bot) per row, retrying a failed request `attempts - 1` times."""
        rows = np.ascontiguousarray(features, dtype=np.float32)
        result = await self._infer(self._model, rows, (OUTPUT_NAME,))
        output = result.as_numpy(OUTPUT_NAME)
        if output is None or output.shape != (rows.shape[0], 2):
            raise ModelUnavailable(f"{self._model} answered an unexpected output")
        return BotPrediction(
            np.asarray(output[:, BOT_CLASS], dtype=np.float64), self._version(self._model, result)
        )

    async def session_scores(self, features: NDArray[np.float32]) -> SessionPrediction:
        """Return the session scores and contributions per row, retrying like the bot call."""
        rows = np.ascontiguousarray(features, dtype=np.float32)
        model = self._session_model
        result = await self._infer(model, rows, (SCORES_OUTPUT, CONTRIBUTIONS_OUTPUT))
        scores = result.as_numpy(SCORES_OUTPUT)
        contributions = result.as_numpy(CONTRIBUTIONS_OUTPUT)
        n = rows.shape[0]
        if (
            scores is None
            or contributions is None
            or scores.shape != (n, len(OUTPUT_SCORES))
            or contributions.shape != (n, len(ANOMALY_SCORES), N_SESSION_FEATURES)
        ):
            raise ModelUnavailable(f"{model} answered an unexpected output")
        return SessionPrediction(
            np.asarray(scores, dtype=np.float64),
            np.asarray(contributions, dtype=np.float64),
            self._version(model, result),
        )

    async def close(self) -> None:
        """Close the gRPC channel; safe to call twice."""
        if not self._closed:
            self._closed = True
            await self._client.close()
