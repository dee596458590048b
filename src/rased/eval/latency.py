"""Inference latency per transaction through Triton, as the scoring worker asks for it.

Each request carries one transaction's feature row (the worker scores transactions one at
a time as they flush), goes through the worker's own client (`TritonModelClient`, gRPC),
and is timed from the call to the answer. Rows come from real sessions, so the server
runs the model on the inputs it will see, not on zeros.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from rased.adapters.triton.model_client import TritonModelClient
from rased.services.scoring.ports import ModelUnavailable

Log = Callable[[str], None]
_STAGES = ("queue", "compute_input", "compute_infer", "compute_output")
_PROGRESS_EVERY = 500


class TritonUnreachable(Exception):
    """Triton does not answer at the target, or does not serve the model."""


@dataclass(frozen=True)
class LatencyReport:
    """Round-trip times of timed requests and what Triton says it spent on them."""

    model: str
    instance_kinds: tuple[str, ...]
    warmup: int
    round_trip_ms: NDArray[np.float64]
    # Mean milliseconds per request in each of Triton's stages over the timed requests
    # (Triton counts every client's requests, so others' load shows here too).
    server_ms: dict[str, float]


def percentiles(values_ms: Sequence[float] | NDArray[np.float64]) -> tuple[float, float]:
    """Return the median and the 99th percentile of `values_ms`."""
    p50, p99 = np.percentile(np.asarray(values_ms, dtype=np.float64), [50, 99])
    return float(p50), float(p99)


def _unreachable(target: str, detail: str) -> TritonUnreachable:
    return TritonUnreachable(
        f"Triton is not reachable at {target} ({detail}); start it with `make stack-up`"
    )


def _stage_ns(statistics: Any, model: str) -> dict[str, tuple[int, int]]:
    """Return (count, total ns) per stage from Triton's statistics of `model` (JSON form)."""
    totals = {stage: (0, 0) for stage in ("success", *_STAGES)}
    for entry in statistics.get("model_stats", []):
        if entry.get("name") != model:
            continue
        stats = entry.get("inference_stats", {})
        for stage, (count, ns) in list(totals.items()):
            # int64 fields come back as strings in the JSON form.
            totals[stage] = (
                count + int(stats.get(stage, {}).get("count", 0)),
                ns + int(stats.get(stage, {}).get("ns", 0)),
            )
    return totals


async def probe(target: str, model: str, timeout_s: float) -> tuple[str, ...]:
    """Return the instance kinds of `model` (e.g. KIND_CPU) once Triton serves it ready.

    Raises:
        TritonUnreachable: Triton does not answer, or `model` is not ready there.
    """
    client = InferenceServerClient(url=target)
    try:
        try:
            await client.is_server_live(client_timeout=timeout_s)
        except InferenceServerException as exc:
            raise _unreachable(target, exc.message() or str(exc)) from None
        try:
            ready = await client.is_model_ready(model, client_timeout=timeout_s)
        except InferenceServerException as exc:
            ready, detail = False, exc.message()
        else:
            detail = "not ready"
        if not ready:
            raise TritonUnreachable(
                f"Triton at {target} does not serve {model} ({detail}); "
                "`rased models smoke` lists what it serves"
            )
        config = await client.get_model_config(model, as_json=True, client_timeout=timeout_s)
    finally:
        await client.close()
    groups = config.get("config", {}).get("instance_group", [])
    return tuple(str(g.get("kind", "?")) for g in groups)


async def measure(
    target: str,
    rows: NDArray[np.float32],
    requests: int,
    warmup: int,
    timeout_s: float,
    log: Log,
    model: str = "bot_detection",
) -> LatencyReport:
    """Time `requests` one-row requests (cycling through `rows`) after `warmup` untimed ones.

    Raises:
        TritonUnreachable: Triton does not answer, serve the model, or fails a request.
        ValueError: no rows, or fewer than one request.
    """
    if rows.shape[0] < 1 or requests < 1:
        raise ValueError("need at least one feature row and one request")
    kinds = await probe(target, model, timeout_s)
    # One attempt: a retry would hide a failure inside a slow round trip.
    scorer = TritonModelClient(target, model_name=model, timeout_s=timeout_s, attempts=1)
    stats_client = InferenceServerClient(url=target)
    round_trip = np.empty(requests, dtype=np.float64)
    try:
        for i in range(warmup):
            await scorer.bot_probabilities(rows[i % rows.shape[0]][None, :])
        before = _stage_ns(await stats_client.get_inference_statistics(model, as_json=True), model)
        for i in range(requests):
            row = rows[(warmup + i) % rows.shape[0]][None, :]
            start = time.perf_counter_ns()
            await scorer.bot_probabilities(row)
            round_trip[i] = (time.perf_counter_ns() - start) / 1e6
            if (i + 1) % _PROGRESS_EVERY == 0 or i + 1 == requests:
                log(f"timed {i + 1}/{requests} requests")
        after = _stage_ns(await stats_client.get_inference_statistics(model, as_json=True), model)
    except ModelUnavailable as exc:
        raise _unreachable(target, str(exc)) from None
    except InferenceServerException as exc:
        raise _unreachable(target, exc.message() or str(exc)) from None
    finally:
        await scorer.close()
        await stats_client.close()
    served = after["success"][0] - before["success"][0]
    server_ms = {
        stage: (after[stage][1] - before[stage][1]) / 1e6 / served
        for stage in _STAGES
        if served > 0
    }
    return LatencyReport(model, kinds, warmup, round_trip, server_ms)
