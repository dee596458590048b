"""session_scores: keystroke_dynamics, location_anomaly, device_fingerprint, behavioral_anomaly
and overall_confidence from one session compared with the user's profile.

Data: generated people with histories (`rased.training.synthetic_sessions`), each session
turned into `rased.features.profile_comparison.session_features` against the profile the
owner's earlier sessions built with `rased.scoring.profile.updated_profile`: the very code
the scoring worker runs. Every score has its own target from the generator's ground truth:

- keystroke_dynamics: the typing is not the owner's (a script or another person);
- location_anomaly: the reported place is not the owner's (not where they live, travel or
  are);
- device_fingerprint: the device is not the owner's, or it is automated;
- behavioral_anomaly: another person is in the owner's account (takeover); fitted and
  evaluated on people's sessions only (owners and intruders: scripts are bot_detection's);
- overall_confidence: the risk level that the four scores (and the hard evidence) give is
  right: at least MEDIUM for a bot or takeover, LOW for the owner.

Model: one logistic regression per anomaly score on standardized features (its own
subset; the rest weigh 0). Logistic regressions come out calibrated on the population they
are fitted on (measured: ECE on a held-out population) and are additive in the logit, so
each feature's contribution to a score is exact: the served model returns them and the
reason codes name the largest. overall_confidence is P(the risk level is right), from
small gradient-boosted trees on the evidence-amount features and each score's margin (its
logit minus the logit at which it alone makes the risk level MEDIUM), fitted on
out-of-fold scores (folds by user): the verdict's correctness depends on the scores
jointly, which a linear model cannot follow. The ONNX graph is written here (standardize,
contributions, sums, sigmoids, margins) around skl2onnx's conversion of the trees: scores
and contributions in one request, identical on Triton's python backend, onnxruntime_onnx
and in-process.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from rased.eval.metrics import (
    equal_error_rate,
    expected_calibration_error,
    has_both_classes,
    roc_auc,
)
from rased.features.profile_comparison import (
    ANOMALY_SCORES,
    N_SESSION_FEATURES,
    OUTPUT_SCORES,
    SESSION_FEATURE_NAMES,
    SESSION_SCORES_MODEL,
    observe,
    session_features,
)
from rased.features.trajectory import FloatArray
from rased.scoring.profile import UserProfile, updated_profile
from rased.scoring.rules import HEADLESS, RISK_THRESHOLDS, WEBDRIVER, WEIGHTS, risk_level
from rased.training.synthetic_sessions import CASES, SyntheticSession, generate_sessions
from rased.v1 import pipeline_pb2, scoring_pb2

MODEL_NAME = SESSION_SCORES_MODEL
INPUT_NAME = "features"
SCORES_OUTPUT = "scores"
CONTRIBUTIONS_OUTPUT = "contributions"
_OPSET = 17
_ML_OPSET = 3
_FOLDS = 5
# Standardized features are clipped here, in training and in the graph alike: a value far
# outside what training saw moves a score no further than a value at the edge.
Z_CLIP = 6.0
# Parameters are rounded before export, so BLAS summation order cannot change the bytes.
_DECIMALS = 6
_TOLERANCE = 1e-4

MEDIUM_THRESHOLD = min(threshold for threshold, _ in RISK_THRESHOLDS)
# Each anomaly score's logit where, weighted, it reaches MEDIUM on its own: how far a score
# is from that boundary says how firmly it decides the risk level.
MEDIUM_BOUNDARY_LOGITS = np.array(
    [math.log(p / (1 - p)) for p in (MEDIUM_THRESHOLD / WEIGHTS[n] for n in ANOMALY_SCORES)]
)
_EVIDENCE = tuple(n for n in SESSION_FEATURE_NAMES if n.startswith("ev_"))
SCORE_FEATURES: dict[str, tuple[str, ...]] = {
    "keystroke_dynamics": (
        "ev_log_keystrokes",
        "ev_log_rhythm_history",
        *(n for n in SESSION_FEATURE_NAMES if n.startswith("ty_")),
    ),
    "location_anomaly": (
        "ev_has_location",
        "ev_log_profile_sessions",
        *(n for n in SESSION_FEATURE_NAMES if n.startswith("lo_")),
    ),
    "device_fingerprint": (
        "ev_has_device",
        "ev_log_profile_sessions",
        *(n for n in SESSION_FEATURE_NAMES if n.startswith("dv_")),
    ),
    # Behaviour only: how the person types, moves, touches and navigates (device and
    # place have scores of their own, so two lines of evidence stay two).
    "behavioral_anomaly": (
        "ev_log_keystrokes",
        "ev_log_pointer_events",
        "ev_log_touch_events",
        "ev_log_rhythm_history",
        "ev_log_pointer_history",
        "ev_log_touch_history",
        "ty_compared",
        "ty_rhythm_distance",
        *(n for n in SESSION_FEATURE_NAMES if n.startswith(("pt_", "tc_", "hb_"))),
    ),
}

Log = Callable[[str], None]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


class ExportError(RuntimeError):
    """The exported graph does not compute what the fitted model computes."""


@dataclass(frozen=True)
class SessionTrainingConfig:
    """Settings of one training run (populations are generated from the seed)."""

    seed: int = 42
    train_users: int = 200
    test_users: int = 100
    sessions_per_user: int = 24
    regularization: float = 1.0  # scikit-learn's C


@dataclass
class SessionTrainingReport:
    """What one run measured on the held-out population (never fitted)."""

    test_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    test_mean_score_by_case: dict[str, dict[str, float]] = field(default_factory=dict)
    risk_levels_by_case: dict[str, dict[str, int]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class LabelledRows:
    """Feature rows of generated sessions and what really happened in each."""

    x: FloatArray  # [n, N_SESSION_FEATURES]
    targets: dict[str, IntArray]  # per anomaly score, 0/1
    person: BoolArray  # a person (owner or intruder), not a script
    fraud: BoolArray  # a bot or a takeover
    case: NDArray[np.str_]
    user: NDArray[np.str_]


def labelled_rows(sessions: Sequence[SyntheticSession]) -> LabelledRows:
    """Return each session's features against its user's profile at that time, and targets.

    Sessions are taken in order; a user's profile grows with the owner's own sessions only
    (the worker leaves out sessions whose comparison with the profile rates them HIGH or
    CRITICAL, see ADR 0005).
    """
    profiles: dict[str, UserProfile] = {}
    rows: list[FloatArray] = []
    targets: dict[str, list[int]] = {name: [] for name in ANOMALY_SCORES}
    person, fraud, case, user = [], [], [], []
    for session in sessions:
        seen = observe(pipeline_pb2.CompiledTransaction(batches=session.batches))
        profile = profiles.get(session.user, UserProfile())
        rows.append(session_features(seen.evidence, seen.activity, profile))
        truth = session.truth
        targets["keystroke_dynamics"].append(int(not truth.typist_is_owner))
        targets["location_anomaly"].append(int(not truth.place_is_owners))
        targets["device_fingerprint"].append(int(not truth.device_is_owners or truth.automation))
        targets["behavioral_anomaly"].append(int(truth.takeover))
        person.append(session.label != "bot")
        fraud.append(session.label != "human")
        case.append(truth.case)
        user.append(session.user)
        if session.label == "human":
            profiles[session.user] = updated_profile(profile, seen.evidence, seen.activity)
    return LabelledRows(
        x=np.vstack(rows) if rows else np.zeros((0, N_SESSION_FEATURES)),
        targets={k: np.asarray(v, dtype=np.int64) for k, v in targets.items()},
        person=np.asarray(person, dtype=bool),
        fraud=np.asarray(fraud, dtype=bool),
        case=np.asarray(case, dtype=np.str_),
        user=np.asarray(user, dtype=np.str_),
    )


def _sigmoid(v: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-v))
    return out


@dataclass(frozen=True)
class SessionScoresModel:
    """The fitted model; `predict` and `contributions` are what the ONNX graph computes."""

    mean: FloatArray  # [F]
    scale: FloatArray  # [F]
    coef: FloatArray  # [4, F], 0 outside each score's features
    intercept: FloatArray  # [4]
    confidence: Any  # fitted HistGradientBoostingClassifier on `confidence_inputs`

    def standardized(self, x: FloatArray) -> FloatArray:
        """Return the clipped standardized features."""
        z: FloatArray = np.clip((x - self.mean) / self.scale, -Z_CLIP, Z_CLIP)
        return z

    def contributions(self, x: FloatArray) -> FloatArray:
        """Return each feature's additive share of each anomaly score's logit, [n, 4, F]."""
        out: FloatArray = self.standardized(x)[:, None, :] * self.coef[None, :, :]
        return out

    def logits(self, x: FloatArray) -> FloatArray:
        """Return the four anomaly scores' logits, [n, 4]."""
        out: FloatArray = self.contributions(x).sum(axis=2) + self.intercept
        return out

    def predict(self, x: FloatArray) -> FloatArray:
        """Return the five scores (`OUTPUT_SCORES`) of each row, [n, 5]."""
        logits = self.logits(x)
        inputs = confidence_inputs(self.standardized(x), logits).astype(np.float32)
        confidence = np.asarray(self.confidence.predict_proba(inputs))[:, 1]
        return np.column_stack([_sigmoid(logits), confidence])


def confidence_inputs(z: FloatArray, logits: FloatArray) -> FloatArray:
    """Return overall_confidence's inputs: the evidence features and each score's margin."""
    return np.column_stack([z[:, _columns(_EVIDENCE)], logits - MEDIUM_BOUNDARY_LOGITS])


def _columns(names: Sequence[str]) -> list[int]:
    return [SESSION_FEATURE_NAMES.index(n) for n in names]


def _fit_lr(z: FloatArray, y: IntArray, c: float) -> tuple[FloatArray, float]:
    if not has_both_classes(y):
        raise ValueError("a score's training rows hold only one class; generate more sessions")
    model = LogisticRegression(C=c, max_iter=5000).fit(z, y)
    return np.asarray(model.coef_[0], dtype=np.float64), float(model.intercept_[0])


def _score_rows(rows: LabelledRows, name: str) -> BoolArray:
    """Rows a score is fitted and evaluated on (behavioral_anomaly: people only)."""
    if name == "behavioral_anomaly":
        return rows.person
    return np.ones(rows.x.shape[0], dtype=bool)


def hard_evidence_bot_score(x: FloatArray) -> FloatArray:
    """Return bot_detection's floor from what the browser reports (webdriver, headless)."""
    webdriver = x[:, SESSION_FEATURE_NAMES.index("dv_webdriver")] > 0
    headless = x[:, SESSION_FEATURE_NAMES.index("dv_headless")] > 0
    return np.where(webdriver, WEBDRIVER, np.where(headless, HEADLESS, 0.0))


def risk_levels(x: FloatArray, anomaly: FloatArray) -> IntArray:
    """Return the worker's risk level from the anomaly scores and the hard bot evidence.

    bot_detection's pointer model is left out: it was trained on another task (drawing
    circles) and is evaluated on its own data; see the model card.
    """
    bot = hard_evidence_bot_score(x)
    levels = [
        risk_level(
            {"bot_detection": float(b), **dict(zip(ANOMALY_SCORES, map(float, row), strict=True))}
        )
        for b, row in zip(bot, anomaly, strict=True)
    ]
    return np.asarray(levels, dtype=np.int64)


def decision_correct(x: FloatArray, anomaly: FloatArray, fraud: BoolArray) -> IntArray:
    """Return 1 where the risk level is right: MEDIUM or above exactly for the frauds."""
    flagged = risk_levels(x, anomaly) >= scoring_pb2.RISK_LEVEL_MEDIUM
    correct: IntArray = (flagged == fraud).astype(np.int64)
    return correct


def fit_session_scores(rows: LabelledRows, cfg: SessionTrainingConfig) -> SessionScoresModel:
    """Fit the four anomaly scores, then overall_confidence on their out-of-fold logits."""
    mean = rows.x.mean(axis=0)
    scale = rows.x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    mean, scale = np.round(mean, _DECIMALS), np.round(scale, _DECIMALS)
    z = np.clip((rows.x - mean) / scale, -Z_CLIP, Z_CLIP)
    coef = np.zeros((len(ANOMALY_SCORES), N_SESSION_FEATURES))
    intercept = np.zeros(len(ANOMALY_SCORES))
    oof = np.zeros((rows.x.shape[0], len(ANOMALY_SCORES)))
    folds = list(GroupKFold(_FOLDS).split(z, groups=rows.user))
    for k, name in enumerate(ANOMALY_SCORES):
        cols = _columns(SCORE_FEATURES[name])
        use = _score_rows(rows, name)
        y = rows.targets[name]
        w, b = _fit_lr(z[use][:, cols], y[use], cfg.regularization)
        coef[k, cols], intercept[k] = w, b
        for train, test in folds:
            fit = train[use[train]]
            w_f, b_f = _fit_lr(z[fit][:, cols], y[fit], cfg.regularization)
            oof[test, k] = z[test][:, cols] @ w_f + b_f
    # The verdict's correctness depends on the scores jointly (one high score among low
    # ones is often a travelling owner; several together rarely are): small trees.
    correct = decision_correct(rows.x, _sigmoid(oof), rows.fraud)
    if not has_both_classes(correct):
        raise ValueError("every risk level was right (or wrong); generate more sessions")
    confidence = HistGradientBoostingClassifier(
        max_iter=100, max_leaf_nodes=15, min_samples_leaf=40, random_state=cfg.seed
    ).fit(confidence_inputs(z, oof).astype(np.float32), correct)
    return SessionScoresModel(
        mean=mean,
        scale=scale,
        coef=np.round(coef, _DECIMALS),
        intercept=np.round(intercept, _DECIMALS),
        confidence=confidence,
    )


def _const(name: str, value: FloatArray | Sequence[int]) -> onnx.TensorProto:
    array = np.asarray(value)
    dtype = np.int64 if array.dtype.kind in "iu" else np.float32
    return numpy_helper.from_array(array.astype(dtype), name)


def _confidence_nodes(
    model: SessionScoresModel,
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Return the confidence trees' nodes (reading `confidence_inputs`, writing
    `confidence/probabilities`) and their initializers, as skl2onnx converts them."""
    width = len(_EVIDENCE) + len(ANOMALY_SCORES)
    with warnings.catch_warnings():
        # skl2onnx writes a boolean attribute as an int list; onnx warns, the graph is valid.
        warnings.simplefilter("ignore", DeprecationWarning)
        trees = to_onnx(
            model.confidence,
            initial_types=[("confidence_inputs", FloatTensorType([None, width]))],
            options={id(model.confidence): {"zipmap": False}},
            target_opset={"": _OPSET, "ai.onnx.ml": _ML_OPSET},
        )
    keep = {"confidence_inputs", ""}

    def renamed(name: str) -> str:
        return name if name in keep else f"confidence/{name}"

    nodes = []
    for node in trees.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = renamed(node.name) if node.name else ""
        copy.input[:] = [renamed(n) for n in node.input]
        copy.output[:] = [renamed(n) for n in node.output]
        nodes.append(copy)
    initializers = []
    for tensor in trees.graph.initializer:
        constant = onnx.TensorProto()
        constant.CopyFrom(tensor)
        constant.name = renamed(tensor.name)
        initializers.append(constant)
    outputs = [o.name for o in trees.graph.output]
    if "probabilities" not in outputs:
        raise ExportError(f"skl2onnx named the confidence outputs {outputs}, not probabilities")
    return nodes, initializers


def onnx_graph(model: SessionScoresModel, metadata: dict[str, str]) -> onnx.ModelProto:
    """Return the ONNX model: `features` [N, F] -> `scores` [N, 5], `contributions` [N, 4, F]."""
    k, f = model.coef.shape
    tree_nodes, tree_initializers = _confidence_nodes(model)
    initializers = [
        _const("mean", model.mean),
        _const("scale", model.scale),
        _const("z_min", np.array(-Z_CLIP)),
        _const("z_max", np.array(Z_CLIP)),
        _const("coef", model.coef),
        _const("intercept", model.intercept),
        _const("boundary", MEDIUM_BOUNDARY_LOGITS),
        _const("evidence_columns", _columns(_EVIDENCE)),
        _const("axis_1", [1]),
        _const("axis_2", [2]),
        _const("column_1", [1]),
        _const("column_2", [2]),
        *tree_initializers,
    ]
    node = helper.make_node
    nodes = [
        node("Sub", [INPUT_NAME, "mean"], ["centred"]),
        node("Div", ["centred", "scale"], ["z_raw"]),
        node("Clip", ["z_raw", "z_min", "z_max"], ["z"]),
        node("Unsqueeze", ["z", "axis_1"], ["z_rows"]),
        node("Mul", ["z_rows", "coef"], [CONTRIBUTIONS_OUTPUT]),
        node("ReduceSum", [CONTRIBUTIONS_OUTPUT, "axis_2"], ["sums"], keepdims=0),
        node("Add", ["sums", "intercept"], ["logits"]),
        node("Sigmoid", ["logits"], ["anomaly"]),
        node("Sub", ["logits", "boundary"], ["margin"]),
        node("Gather", ["z", "evidence_columns"], ["evidence"], axis=1),
        node("Concat", ["evidence", "margin"], ["confidence_inputs"], axis=1),
        *tree_nodes,
        # P(right) is the trees' second column.
        node(
            "Slice", ["confidence/probabilities", "column_1", "column_2", "axis_1"], ["confidence"]
        ),
        node("Concat", ["anomaly", "confidence"], [SCORES_OUTPUT], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        MODEL_NAME,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", f])],
        [
            helper.make_tensor_value_info(SCORES_OUTPUT, TensorProto.FLOAT, ["N", k + 1]),
            helper.make_tensor_value_info(CONTRIBUTIONS_OUTPUT, TensorProto.FLOAT, ["N", k, f]),
        ],
        initializer=initializers,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", _OPSET),
            helper.make_opsetid("ai.onnx.ml", _ML_OPSET),
        ],
        producer_name="rased.training",
    )
    # Triton's onnxruntime backend reads IR version 8 (onnxruntime 1.14 and later).
    proto.ir_version = 8
    for key, value in {
        "feature_names": json.dumps(list(SESSION_FEATURE_NAMES)),
        "scores": json.dumps(list(OUTPUT_SCORES)),
        **metadata,
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto


def run_onnx(path: Path, x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return (scores, contributions) of the ONNX model at `path` for the rows `x`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores, contributions = session.run(
        [SCORES_OUTPUT, CONTRIBUTIONS_OUTPUT], {INPUT_NAME: x.astype(np.float32)}
    )
    return np.asarray(scores, dtype=np.float64), np.asarray(contributions, dtype=np.float64)


def export_session_scores(
    model: SessionScoresModel, path: Path, check_rows: FloatArray, metadata: dict[str, str]
) -> None:
    """Write the ONNX file and check onnxruntime reproduces the model on `check_rows`.

    The trees compare float32 inputs with their thresholds, so a row whose margin lies
    within float32 rounding of a threshold may take the other branch: the trees are
    checked on the graph's own inputs to them, the inputs against the model's.

    Raises:
        ExportError: a score, a contribution or a tree input differs by more than 1e-4.
    """
    proto = onnx_graph(model, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    scores, contributions = run_onnx(path, check_rows)
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    width = len(_EVIDENCE) + len(ANOMALY_SCORES)
    probe.graph.output.append(
        helper.make_tensor_value_info("confidence_inputs", TensorProto.FLOAT, ["N", width])
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    (inputs,) = session.run(["confidence_inputs"], {INPUT_NAME: check_rows.astype(np.float32)})
    z = model.standardized(check_rows)
    want = model.predict(check_rows)
    gaps = {
        "anomaly scores": np.abs(scores[:, :-1] - want[:, :-1]),
        "contributions": np.abs(contributions - model.contributions(check_rows)),
        "tree inputs": np.abs(inputs - confidence_inputs(z, model.logits(check_rows))),
        "overall_confidence": np.abs(
            scores[:, -1] - np.asarray(model.confidence.predict_proba(inputs))[:, 1]
        ),
    }
    for what, gap in gaps.items():
        worst = float(gap.max(initial=0.0))
        if worst > _TOLERANCE:
            raise ExportError(f"{path}: ONNX and the fitted model's {what} differ by {worst:.2g}")


def _metrics(y: IntArray, p: FloatArray) -> dict[str, float]:
    return {
        "roc_auc": roc_auc(y, p),
        "eer": equal_error_rate(y, p),
        "ece": expected_calibration_error(y, p),
        "sessions": float(y.size),
        "positives": float(y.sum()),
    }


_LEVELS = {
    scoring_pb2.RISK_LEVEL_LOW: "LOW",
    scoring_pb2.RISK_LEVEL_MEDIUM: "MEDIUM",
    scoring_pb2.RISK_LEVEL_HIGH: "HIGH",
    scoring_pb2.RISK_LEVEL_CRITICAL: "CRITICAL",
}


def evaluate(model: SessionScoresModel, rows: LabelledRows, report: SessionTrainingReport) -> None:
    """Fill the report's metrics from rows the model never saw."""
    scores = model.predict(rows.x)
    for k, name in enumerate(ANOMALY_SCORES):
        use = _score_rows(rows, name)
        report.test_metrics[name] = _metrics(rows.targets[name][use], scores[use, k])
        # The same, where the user has history to compare with (3 sessions or more).
        history = np.expm1(rows.x[:, SESSION_FEATURE_NAMES.index("ev_log_profile_sessions")])
        known = use & (history >= 3 - 1e-6)
        if has_both_classes(rows.targets[name][known]):
            report.test_metrics[f"{name} (3+ sessions of history)"] = _metrics(
                rows.targets[name][known], scores[known, k]
            )
    correct = decision_correct(rows.x, scores[:, :4], rows.fraud)
    report.test_metrics["overall_confidence"] = _metrics(correct, scores[:, 4])
    report.test_metrics["overall_confidence"]["risk_level_accuracy"] = float(correct.mean())
    levels = risk_levels(rows.x, scores[:, :4])
    for case in CASES:
        here = rows.case == case
        if not here.any():
            continue
        report.test_mean_score_by_case[case] = {
            name: round(float(scores[here, k].mean()), 4) for k, name in enumerate(OUTPUT_SCORES)
        }
        report.risk_levels_by_case[case] = {
            label: int((levels[here] == level).sum()) for level, label in _LEVELS.items()
        }


def train_session_scores(
    repository: Path, cfg: SessionTrainingConfig, log: Log
) -> SessionTrainingReport:
    """Generate, fit, evaluate on a held-out population and export to `repository`."""
    started = time.monotonic()
    log(f"{MODEL_NAME}: generating {cfg.train_users} + {cfg.test_users} users' sessions")
    train = labelled_rows(generate_sessions(cfg.train_users, cfg.sessions_per_user, cfg.seed))
    # A separate population (another seed): other people, devices and places.
    test = labelled_rows(generate_sessions(cfg.test_users, cfg.sessions_per_user, cfg.seed + 1))
    log(f"{MODEL_NAME}: fitting on {train.x.shape[0]} sessions")
    model = fit_session_scores(train, cfg)
    report = SessionTrainingReport(
        counts={
            "train_sessions": int(train.x.shape[0]),
            "test_sessions": int(test.x.shape[0]),
            "train_users": cfg.train_users,
            "test_users": cfg.test_users,
        }
    )
    evaluate(model, test, report)
    path = repository / MODEL_NAME / "1" / "model.onnx"
    export_session_scores(
        model,
        path,
        test.x,
        {
            "model": MODEL_NAME,
            "seed": str(cfg.seed),
            "data": "synthetic (rased.training.synthetic_sessions)",
        },
    )
    report.seconds = time.monotonic() - started
    summary = ", ".join(
        f"{name} AUC {report.test_metrics[name]['roc_auc']:.3f}" for name in OUTPUT_SCORES
    )
    log(f"{MODEL_NAME}: held-out {summary}; wrote {path}")
    return report
