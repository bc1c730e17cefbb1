"""Model files that break the daemon in the ways users and attackers found: tests and the
reliability harness deploy them. Each is a real ONNX graph with edgecam's metadata, so
it passes every check that reads only the file.

- ``nan_on_real_frames``: finite on the all-zero warm-up tensor, NaN on any real frame;
- ``nan_when_bright``: finite on dark frames, NaN on bright ones (passes a check made on a
  dark scene, fails later: what a rollback is for);
- ``huge_input``: declares a 20000x20000 input (gigabytes at its first run);
- ``memory_hog``: a small input it expands to gigabytes inside the graph;
- ``slow``: a first run that takes far longer than a Pi allows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgecam.model.metadata import info_to_props
from edgecam.model.types import ModelInfo

LABELS = ("open", "closed", "unknown")


def _info(name: str, size: int) -> ModelInfo:
    return ModelInfo(name=name, arch="tiny", precision="fp32", input_size=size, labels=LABELS, trained=True,
                     weights="hostile", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), color_order="RGB",
                     layout="NCHW_float")


def _save(path: Path, name: str, size: int, nodes: list[onnx.NodeProto],
          initializers: list[onnx.TensorProto]) -> Path:
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in info_to_props(_info(name, size)).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _const(name: str, values: np.ndarray) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, list(values.shape), values.astype(np.float32).ravel())


def _mean_to_logits(head: list[onnx.NodeProto], value: str) -> list[onnx.NodeProto]:
    """(N, 1) ``value`` -> (N, 3) logits: value * [1, 0.5, 0] (finite stays finite, NaN stays NaN)."""
    return [*head, helper.make_node("MatMul", [value, "spread"], ["logits"])]


def _pooled() -> list[onnx.NodeProto]:
    """input (N, 3, S, S) -> pooled (N, 1): the mean of every value, per image."""
    return [helper.make_node("ReduceMean", ["input"], ["pooled4"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["pooled4", "shape_n1"], ["pooled"])]


def _common() -> list[onnx.TensorProto]:
    return [_const("spread", np.array([[1.0, 0.5, 0.0]])),
            helper.make_tensor("shape_n1", TensorProto.INT64, [2], [-1, 1])]


def nan_on_real_frames(path: Path, size: int = 64) -> Path:
    """sqrt(-|mean|): 0 for the zero tensor, NaN for any frame whose mean is not exactly 0."""
    nodes = [*_pooled(), helper.make_node("Abs", ["pooled"], ["abs"]), helper.make_node("Neg", ["abs"], ["neg"]),
             helper.make_node("Sqrt", ["neg"], ["value"])]
    return _save(path, "nan_on_real_frames", size, _mean_to_logits(nodes, "value"), _common())


def nan_when_bright(path: Path, threshold: float = 1.0, size: int = 64) -> Path:
    """sqrt(threshold - mean): finite while the normalized mean is below ``threshold`` (a dark
    frame is about -2, the zero tensor 0, a white frame +2), NaN above it."""
    nodes = [*_pooled(), helper.make_node("Sub", ["threshold", "pooled"], ["room"]),
             helper.make_node("Sqrt", ["room"], ["value"])]
    return _save(path, "nan_when_bright", size, _mean_to_logits(nodes, "value"),
                 [*_common(), _const("threshold", np.array([threshold]))])


def huge_input(path: Path, size: int = 20000) -> Path:
    """A plain mean model that declares a ``size`` x ``size`` input."""
    return _save(path, "huge_input", size, _mean_to_logits(_pooled(), "pooled"), _common())


def memory_hog(path: Path, gigabytes: float = 4.0, size: int = 32) -> Path:
    """Broadcasts each image's channel means to ``gigabytes`` of floats, then averages them."""
    side = int((gigabytes * 2**30 / 4 / 3) ** 0.5)
    nodes = [helper.make_node("ReduceMean", ["input"], ["means"], axes=[2, 3], keepdims=1),
             helper.make_node("Expand", ["means", "big"], ["expanded"]),
             helper.make_node("ReduceMean", ["expanded"], ["pooled4"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Reshape", ["pooled4", "shape_n1"], ["pooled"])]
    big = helper.make_tensor("big", TensorProto.INT64, [4], [1, 3, side, side])
    return _save(path, "memory_hog", size, _mean_to_logits(nodes, "pooled"), [*_common(), big])


def slow(path: Path, matmuls: int = 1500, side: int = 512, size: int = 32) -> Path:
    """``matmuls`` chained ``side`` x ``side`` matrix products per run, fed by the input (so
    nothing can be folded at load): 0.4 TFLOP, 2-3 s a run on a quiet 2-core x86 VM with AVX2
    or AVX-512 VNNI (2x the default max_run_ms or more), minutes on a Pi."""
    rng = np.random.default_rng(0)
    weight = _const("w", rng.normal(0, 1 / side**0.5, (side, side)))
    nodes = [*_pooled(), helper.make_node("ReduceMean", ["pooled"], ["scalar"], keepdims=1),
             helper.make_node("Expand", ["scalar", "square"], ["m0"])]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"m{i}", "w"], [f"m{i + 1}"]))
    nodes += [helper.make_node("ReduceMean", [f"m{matmuls}"], ["chain"], keepdims=0),
              helper.make_node("Add", ["pooled", "chain"], ["value"])]
    square = helper.make_tensor("square", TensorProto.INT64, [2], [side, side])
    return _save(path, "slow", size, _mean_to_logits(nodes, "value"), [*_common(), weight, square])
