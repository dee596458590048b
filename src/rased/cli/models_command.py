"""`rased models smoke`: ask Triton for each model's outputs on inputs with known answers."""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from rased.devstack.settings import repository_root
from rased.features.pointer import bot_features
from rased.features.profile_comparison import observe, session_features
from rased.features.trajectory import Trajectory
from rased.scoring.profile import UserProfile, updated_profile
from rased.training import synthetic_sessions
from rased.v1 import pipeline_pb2


@dataclass(frozen=True)
class SmokeCase:
    """One model's check: an input, the output to read, and what the answer must satisfy."""

    input_name: str
    rows: NDArray[np.float32]
    output_name: str
    check: Callable[[NDArray[np.float32]], str | None]  # None when good, else the problem


def _line_and_person() -> NDArray[np.float32]:
    """A scripted straight line at constant speed, and a real person's DELBOT session."""
    steps = np.arange(60, dtype=np.float64)
    line = Trajectory.from_arrays(steps * 16.0, 100 + steps * 5, 200 + steps * 5)
    sample = repository_root() / "model_repository" / "bot_detection" / "smoke_human_session.csv"
    lines = [line for line in sample.read_text().splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(lines))
    person = Trajectory.from_arrays(
        [float(r["t_ms"]) for r in rows],
        [float(r["x"]) for r in rows],
        [float(r["y"]) for r in rows],
    )
    return np.stack([bot_features(line), bot_features(person)]).astype(np.float32)


def _bot_detection_check(probabilities: NDArray[np.float32]) -> str | None:
    if probabilities.shape != (2, 2):
        return f"expected 2 rows of [P(person), P(bot)], got shape {probabilities.shape}"
    if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
        return f"rows do not sum to 1: {probabilities.tolist()}"
    if not probabilities[0, 1] > probabilities[1, 1]:
        return f"the scripted line is not more bot-like than the person: {probabilities.tolist()}"
    return None


# A generated user (seeded) with this many sessions of history before the two checked ones.
_SMOKE_SEED = 2
_SMOKE_HISTORY = 8


def _owner_and_intruder() -> NDArray[np.float32]:
    """A returning owner's session and a takeover of the same account, against its profile."""
    (person,) = synthetic_sessions.make_population(1, _SMOKE_SEED)
    rng = np.random.default_rng(_SMOKE_SEED)
    profile = UserProfile()
    for index in range(_SMOKE_HISTORY):
        seen = observe(_compiled(synthetic_sessions.make_session(person, "human", index, rng)))
        profile = updated_profile(profile, seen.evidence, seen.activity)
    rows = []
    for index, label in enumerate(("human", "takeover"), start=_SMOKE_HISTORY):
        seen = observe(_compiled(synthetic_sessions.make_session(person, label, index, rng)))
        rows.append(session_features(seen.evidence, seen.activity, profile))
    return np.stack(rows).astype(np.float32)


def _compiled(session: synthetic_sessions.SyntheticSession) -> pipeline_pb2.CompiledTransaction:
    return pipeline_pb2.CompiledTransaction(batches=session.batches)


def _session_scores_check(scores: NDArray[np.float32]) -> str | None:
    if scores.shape != (2, 5):
        return f"expected 2 rows of 5 scores, got shape {scores.shape}"
    if not ((scores >= 0) & (scores <= 1)).all():
        return f"scores outside [0, 1]: {scores.tolist()}"
    owner, intruder = scores
    # Columns: keystroke_dynamics, location_anomaly, device_fingerprint, behavioral_anomaly,
    # overall_confidence.
    if not owner[:4].max() < 0.5 < intruder[3]:
        return f"expected a calm owner and an anomalous takeover, got {scores.tolist()}"
    return None


CASES: dict[str, Callable[[], SmokeCase]] = {
    "stack_check": lambda: SmokeCase(
        "INPUT",
        np.array([[1.0, -2.5, 3.0]], dtype=np.float32),
        "OUTPUT",
        lambda out: (
            None
            if np.allclose(out, [[2.0, -5.0, 6.0]])
            else f"expected the input doubled, got {out.tolist()}"
        ),
    ),
    "bot_detection": lambda: SmokeCase(
        "features", _line_and_person(), "probabilities", _bot_detection_check
    ),
    "session_scores": lambda: SmokeCase(
        "features", _owner_and_intruder(), "scores", _session_scores_check
    ),
}


async def smoke(target: str, wait_seconds: float) -> int:
    """Check every ready model Triton serves; return 0 when all give the expected answers."""
    client = InferenceServerClient(url=target)
    failures = 0
    try:
        index = await client.get_model_repository_index(client_timeout=wait_seconds)
        ready = [m.name for m in index.models if m.state == "READY"]
        if not ready:
            print(f"{target}: no model is ready", file=sys.stderr)
            return 1
        for name in sorted(ready):
            if name not in CASES:
                print(f"  {name:<16} SKIPPED  no smoke case defined for this model")
                continue
            case = CASES[name]()
            tensor = InferInput(case.input_name, list(case.rows.shape), "FP32")
            tensor.set_data_from_numpy(case.rows)
            try:
                result = await client.infer(
                    name,
                    [tensor],
                    outputs=[InferRequestedOutput(case.output_name)],
                    client_timeout=wait_seconds,
                )
                problem = case.check(result.as_numpy(case.output_name))
            except InferenceServerException as error:
                problem = f"inference failed: {error.message()}"
            print(f"  {name:<16} {'OK' if problem is None else 'FAILED'}  {problem or ''}")
            failures += problem is not None
    except InferenceServerException as error:
        print(f"{target}: {error.message()}", file=sys.stderr)
        return 2
    finally:
        await client.close()
    return 1 if failures else 0


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser], target: str) -> None:
    """Add `rased models smoke`; `target` is `--target`'s default, the stack's Triton."""
    models = commands.add_parser("models", help="the models Triton serves")
    actions = models.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    check = actions.add_parser("smoke", help="check each model's outputs on known inputs")
    check.add_argument(
        "--target",
        default=target,
        help=f"Triton's gRPC host:port ({target}, from $RASED_STACK_HOST and "
        "$RASED_STACK_TRITON_GRPC_PORT)",
    )
    check.add_argument("--timeout", type=float, default=10.0, help="seconds per call")


def run(options: argparse.Namespace) -> int:
    """Run `rased models ...`."""
    return asyncio.run(smoke(options.target, options.timeout))


__all__ = ["CASES", "add_parsers", "run", "smoke"]
