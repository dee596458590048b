"""Every Triton config in model_repository/ parses as Triton's ModelConfig and matches its model."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from rased.devstack.settings import repository_root

REPOSITORY = repository_root() / "model_repository"
CONFIGS = sorted([*REPOSITORY.glob("*/config.pbtxt"), *REPOSITORY.glob("*/configs/*.pbtxt")])


def _load(path: Path) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    # Strict: an unknown or misspelled field is an error, as it is for Triton.
    text_format.Parse(path.read_text(), config)
    return config


MODELS = ("bot_detection", "session_scores")


def test_there_are_cpu_and_gpu_configs() -> None:
    names = {str(p.relative_to(REPOSITORY)) for p in CONFIGS}
    for model in MODELS:
        assert f"{model}/config.pbtxt" in names
        assert f"{model}/configs/gpu.pbtxt" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPOSITORY)))
def test_config_parses_and_names_its_folder(path: Path) -> None:
    config = _load(path)
    model_dir = path.parent if path.name == "config.pbtxt" else path.parent.parent
    assert config.name == model_dir.name
    assert config.input and config.output
    assert config.max_batch_size > 0


@pytest.mark.parametrize("model", MODELS)
def test_gpu_config_matches_the_cpu_contract_and_the_onnx_graph(model: str) -> None:
    cpu = _load(REPOSITORY / model / "config.pbtxt")
    gpu = _load(REPOSITORY / model / "configs/gpu.pbtxt")
    assert cpu.backend == "python"
    assert cpu.HasField("dynamic_batching") and gpu.HasField("dynamic_batching")
    assert gpu.platform == "onnxruntime_onnx"
    assert gpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    for side in ("input", "output"):
        assert [(t.name, t.data_type, list(t.dims)) for t in getattr(gpu, side)] == [
            (t.name, t.data_type, list(t.dims)) for t in getattr(cpu, side)
        ]
    # onnxruntime_onnx binds tensors by the graph's own names and shapes (and so does the
    # python backend's model.py, which runs the same file).
    session = ort.InferenceSession(
        str(REPOSITORY / model / "1" / gpu.default_model_filename),
        providers=["CPUExecutionProvider"],
    )
    graph_inputs = {i.name: i.shape[1:] for i in session.get_inputs()}
    graph_outputs = {o.name: o.shape[1:] for o in session.get_outputs()}
    for tensor in gpu.input:
        assert graph_inputs[tensor.name] == list(tensor.dims)
    for tensor in gpu.output:
        assert graph_outputs[tensor.name] == list(tensor.dims)
