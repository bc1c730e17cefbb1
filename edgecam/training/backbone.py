"""The frozen backbone as ONNX, cut from an edgecam model file, and a new head grafted on.

Training without torch needs the ImageNet backbone as a graph onnxruntime can
run. It is cut from a model ``edgecam model build`` wrote (the daemon's model,
e.g. ``models/efficientnet_lite0_160_fp32.onnx``): every such file ends in

    ... -> GlobalAveragePool -> Reshape -> Gemm(transB=1; the head's weight and bias) -> "logits"

so the pooled features are the Gemm's first input. ``features_model`` is the
graph up to there; ``graft`` is the whole graph with the Gemm's weight and bias
replaced by the trained head's. Node names, input, layout and the dynamic batch
axis stay as they were, so the result looks to the runtime (and to the INT8
quantizer's per-layer rules) exactly like a model exported from torch.

An INT8 file (QDQ, from ``edgecam model build``) works too, for a device that
keeps only the file it runs: its weights are dequantized into float initializers
and each activation QuantizeLinear/DequantizeLinear pair becomes the Clip it
implies, which gives a float graph with the INT8 file's (rounded) weights and
clamps. Its features are close to the FP32 file's, not equal
(see the tests). A model whose backbone was fine-tuned (``--finetune``) is
refused: its features were tuned to another task.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecam.errors import ModelBuildError, ModelError
from edgecam.model.metadata import info_from_props
from edgecam.model.types import ModelInfo

log = logging.getLogger(__name__)

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
FEATURES_OUTPUT = "pooled"


@dataclass
class Backbone:
    """An edgecam model file opened as a backbone."""

    path: Path
    model: object  # onnx.ModelProto: the float graph with its original head
    info: ModelInfo  # what the source file says about itself
    digest: str  # "sha256:<16 hex>" of the source file's bytes
    head_index: int  # position of the head's Gemm in graph.node
    dequantized: bool  # cut from an INT8 file

    @property
    def head(self):  # -> onnx.NodeProto
        return self.model.graph.node[self.head_index]  # type: ignore[attr-defined]

    @property
    def feature_dim(self) -> int:
        return int(self._initializer(self.head.input[1]).dims[1])

    def _initializer(self, name: str):  # -> onnx.TensorProto
        for tensor in self.model.graph.initializer:  # type: ignore[attr-defined]
            if tensor.name == name:
                return tensor
        raise ModelBuildError(f"{self.path.name}: the head's {name!r} is not a constant")

    def describe(self) -> str:
        kind = "INT8, dequantized" if self.dequantized else "FP32"
        return f"{self.path.name} ({kind}, {self.digest})"


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return "sha256:" + sha.hexdigest()[:16]


def load_backbone(path: str | Path) -> Backbone:
    """Open an edgecam model file as a backbone; ModelBuildError says why one cannot be."""
    import onnx
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    path = Path(path)
    if not path.is_file():
        raise ModelBuildError(f"backbone {path}: no such file")
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError) as err:
        raise ModelBuildError(f"backbone {path}: not an ONNX file ({str(err)[:120]})") from None
    try:
        info = info_from_props({p.key: p.value for p in model.metadata_props}, path.name)
    except ModelError as err:
        raise ModelBuildError(f"backbone {err}") from None
    finetuned = str((info.metrics.get("training") or {}).get("finetuned", "no"))
    if finetuned != "no":
        raise ModelBuildError(
            f"backbone {path.name}: its backbone was fine-tuned ({finetuned}) for its own classes; "
            "use the ImageNet model `edgecam model build` writes (e.g. efficientnet_lite0_160_fp32.onnx)"
        )
    dequantized = any(node.op_type in QDQ_OPS for node in model.graph.node)
    if dequantized:
        _dequantize(model.graph, path.name)
    head_index = _head_index(model.graph, path.name)
    backbone = Backbone(path, model, info, _digest(path), head_index, dequantized)
    log.info("backbone: %s, %s, %d features", backbone.describe(), info.arch, backbone.feature_dim)
    return backbone


def _head_index(graph, source: str) -> int:
    if len(graph.output) != 1:
        raise ModelBuildError(f"backbone {source}: {len(graph.output)} outputs, expected 1")
    out = graph.output[0].name
    found = [i for i, node in enumerate(graph.node) if out in node.output]
    node = graph.node[found[0]] if found else None
    constants = {t.name for t in graph.initializer}
    attrs = {a.name: a for a in node.attribute} if node is not None else {}
    if (node is None or node.op_type != "Gemm" or len(node.input) != 3
            or node.input[1] not in constants or node.input[2] not in constants
            or "transB" not in attrs or attrs["transB"].i != 1 or ("transA" in attrs and attrs["transA"].i)):
        what = node.op_type if node is not None else "nothing"
        raise ModelBuildError(
            f"backbone {source}: its output comes from {what}, not from the Gemm(transB=1) head with "
            "constant weights that edgecam's exports end with: not a backbone edgecam can cut"
        )
    return found[0]


def _attr(node, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def _dequantize(graph, source: str) -> None:
    """QDQ graph -> float graph, in place (see the module docstring).

    A weight's DequantizeLinear becomes a float initializer. An activation's
    QuantizeLinear -> DequantizeLinear pair becomes a Clip to the range the pair can
    represent: the quantizer drops ReLU/Clip nodes whose range the quantization
    already enforces, so the pair is where their clamp lives now. The pair on the
    graph's output (the logits) is simply removed: the head is replaced anyway.
    """
    from onnx import helper, numpy_helper

    constants = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    new_constants, kept = [], []
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            continue
        if node.op_type != "DequantizeLinear":
            kept.append(node)
            continue
        if all(i in constants for i in node.input if i):
            new_constants.append(numpy_helper.from_array(_dequantized(node, constants), node.output[0]))
            continue
        quant = producer.get(node.input[0])
        if quant is None or quant.op_type != "QuantizeLinear":
            raise ModelBuildError(f"backbone {source}: DequantizeLinear {node.name!r} without its "
                                  "QuantizeLinear: not a QDQ model edgecam can dequantize")
        if node.output[0] in outputs:
            producer[quant.input[0]].output[:] = [
                node.output[0] if name == quant.input[0] else name for name in producer[quant.input[0]].output]
            continue
        low, high = _representable(quant, constants, source)
        names = (f"{node.output[0]}_clip_min", f"{node.output[0]}_clip_max")
        new_constants += [numpy_helper.from_array(np.array(low, np.float32), names[0]),
                          numpy_helper.from_array(np.array(high, np.float32), names[1])]
        kept.append(helper.make_node("Clip", [quant.input[0], *names], [node.output[0]],
                                     name=f"{node.name}_as_clip"))
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    keep = [t for t in graph.initializer if t.name in used] + [t for t in new_constants if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.value_info[:]
    left = [n.op_type for n in graph.node if n.op_type in QDQ_OPS or n.domain not in ("", "ai.onnx")]
    if left:
        raise ModelBuildError(f"backbone {source}: {left[0]} nodes remain after dequantizing")


_QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767)}


def _representable(quant, constants: dict, source: str) -> tuple[float, float]:
    """The float range a per-tensor QuantizeLinear can represent: (qmin - zp) * s .. (qmax - zp) * s."""
    from onnx import numpy_helper

    scale = numpy_helper.to_array(constants[quant.input[1]]).astype(np.float64)
    zero = numpy_helper.to_array(constants[quant.input[2]])
    if scale.size != 1 or zero.dtype.name not in _QRANGE:
        raise ModelBuildError(f"backbone {source}: activation quantization {quant.name!r} is per channel "
                              f"or {zero.dtype.name}: not a QDQ model edgecam can dequantize")
    qmin, qmax = _QRANGE[zero.dtype.name]
    offset = float(zero.reshape(-1)[0])
    return float((qmin - offset) * scale.reshape(-1)[0]), float((qmax - offset) * scale.reshape(-1)[0])


def _dequantized(node, constants: dict) -> np.ndarray:
    """(q - zero_point) * scale, per tensor or per channel along the node's axis."""
    from onnx import numpy_helper

    q = numpy_helper.to_array(constants[node.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(constants[node.input[1]]).astype(np.float32)
    zero = (numpy_helper.to_array(constants[node.input[2]]).astype(np.float32)
            if len(node.input) > 2 and node.input[2] else np.zeros_like(scale))
    if scale.size > 1:
        axis = _attr(node, "axis", 1) % q.ndim
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((q - zero) * scale).astype(np.float32)


def features_model(backbone: Backbone) -> bytes:
    """The serialized graph from the input to the pooled features, output ``pooled`` (N, F)."""
    import onnx
    from onnx import helper

    model = onnx.ModelProto()
    model.CopyFrom(backbone.model)
    graph = model.graph
    head = graph.node[backbone.head_index]
    features = head.input[0]
    del graph.node[backbone.head_index]
    graph.node.append(helper.make_node("Identity", [features], [FEATURES_OUTPUT], name="features"))
    batch = graph.output[0].type.tensor_type.shape.dim[0]
    del graph.output[:]
    out = helper.make_tensor_value_info(FEATURES_OUTPUT, onnx.TensorProto.FLOAT, [None, backbone.feature_dim])
    out.type.tensor_type.shape.dim[0].CopyFrom(batch)
    graph.output.append(out)
    used = {name for node in graph.node for name in node.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del model.metadata_props[:]
    return model.SerializeToString()


def graft(backbone: Backbone, weight: np.ndarray, bias: np.ndarray, out: Path) -> None:
    """Write the backbone with the head's Gemm computing ``x @ weight.T + bias`` to ``out``
    (no metadata yet: ``export.metadata.write_metadata`` adds it)."""
    import onnx
    from onnx import numpy_helper

    classes, features = weight.shape
    if features != backbone.feature_dim or bias.shape != (classes,):
        raise ModelBuildError(f"internal: a head of {weight.shape} for {backbone.feature_dim} features")
    model = onnx.ModelProto()
    model.CopyFrom(backbone.model)
    graph = model.graph
    head = graph.node[backbone.head_index]
    replaced = {head.input[1]: weight, head.input[2]: bias}
    for i, tensor in enumerate(graph.initializer):
        if tensor.name in replaced:
            graph.initializer[i].CopyFrom(
                numpy_helper.from_array(np.ascontiguousarray(replaced[tensor.name], np.float32), tensor.name))
    graph.output[0].type.tensor_type.shape.dim[1].dim_value = classes
    del model.metadata_props[:]
    onnx.save(model, str(out))
