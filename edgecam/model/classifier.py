"""The runtime classifier: an edgecam ONNX model on onnxruntime (numpy/cv2/onnxruntime only).

Everything the runtime needs (labels, input size, normalization, layout) is
read from the model file's metadata, so any model built by ``edgecam model
build`` works without configuration.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from edgecam.errors import ModelError
from edgecam.model import cpu
from edgecam.model.metadata import LAYOUT_NHWC_UINT8, info_from_props
from edgecam.model.preprocess import DEFAULT_INTERPOLATION, Preprocessor
from edgecam.model.types import Label, ModelInfo

log = logging.getLogger(__name__)

def is_untrained(info: ModelInfo) -> bool:
    """True for models built with ``--weights random``: their labels mean nothing."""
    return not info.trained


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of a 1-D logit vector, as float32."""
    shifted = logits.astype(np.float32).ravel()
    shifted = shifted - shifted.max()
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum()
    return shifted


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of an (N, C) logit array, as float32 (N, C)."""
    if logits.ndim != 2:
        raise ValueError(f"expected (N, C) logits, got shape {logits.shape}")
    if logits.shape[0] == 0:
        return logits.astype(np.float32)
    shifted = logits.astype(np.float32)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _open_session(path: Path, threads: int, exact_int8: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: a bad file is reported by us, once
    # onnxruntime's pool threads busy-wait for work by default: at a camera's 30 FPS that
    # burns a whole core doing nothing (measured: 110%, docs/benchmarks.md), so let them sleep.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The arena keeps freed blocks for reuse; a batch-1 CNN gains nothing from it and it
    # costs ~6 MB of RSS on a 1-4 GB Pi (measured: 37.7 -> 32.0 MB per INT8 ResNet-18).
    options.enable_cpu_mem_arena = False
    if exact_int8:  # x86 without VNNI: the same answers as ARM (edgecam/model/cpu.py)
        options.add_session_config_entry(cpu.EXACT_INT8_OPTION, "1")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises several private exception types
        raise ModelError(f"{path.name}: not a valid ONNX model ({_ort_reason(err)})") from None


def _ort_reason(err: Exception) -> str:
    """The useful tail of an onnxruntime load error, on one line."""
    text = " ".join(str(err).split()) or type(err).__name__
    if "failed:" in text:
        text = text.rsplit("failed:", 1)[1].strip()
    if "Protobuf parsing failed" in text:
        text = "protobuf parsing failed: truncated, corrupt or not an ONNX file"
    return text[:200]


class Classifier:
    """Loads an edgecam model once; classifies BGR frames of any size."""

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int = 2,
        interpolation: str = DEFAULT_INTERPOLATION,
        max_input_size: Optional[int] = None,
        exact_int8: Optional[bool] = None,
    ) -> None:
        """``max_input_size``: refuse a model whose input is larger (px per side) before it
        runs once: a declared 20000x20000 input would take gigabytes at the warm-up run.
        ``exact_int8``: exact INT8 sums on x86 without VNNI; None decides for this CPU."""
        self.path = Path(path)
        if not self.path.is_file():
            what = ("is a directory, not a model file" if self.path.is_dir()
                    else "does not exist (build one with `edgecam model build --arch auto --out models`)")
            raise ModelError(f"model file {self.path} {what}")
        if self.path.stat().st_size == 0:
            raise ModelError(f"{self.path.name}: model file is empty")
        self.exact_int8 = cpu.auto().exact if exact_int8 is None else exact_int8
        self._session = _open_session(self.path, threads, self.exact_int8)
        # A model that fails on every frame must not also write onnxruntime's own error lines
        # to the journal for each one (10 a second): the ModelError carries the message.
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4
        props = self._session.get_modelmeta().custom_metadata_map
        self.info: ModelInfo = info_from_props(props, self.path.name)
        if max_input_size is not None and self.info.input_size > max_input_size:
            raise ModelError(f"{self.path.name}: its input is {self.info.input_size}x{self.info.input_size} px, "
                             f"more than model.checks.max_input_size ({max_input_size})")
        self._pre = Preprocessor(self.info, interpolation)
        self._input_name = self._check_input()
        self._output_name = self._session.get_outputs()[0].name
        self._check_output(self._run(np.zeros(self._pre.input_shape, self._input_dtype)))
        log.debug("loaded %s (%s, %d threads)", self.path.name, self.info.name, threads)

    @property
    def preprocessor(self) -> Preprocessor:
        return self._pre

    @property
    def _input_dtype(self) -> type:
        return np.uint8 if self.info.layout == LAYOUT_NHWC_UINT8 else np.float32

    def _check_input(self) -> str:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path.name}: expected 1 model input, found {len(inputs)}")
        node = inputs[0]
        shape, want = list(node.shape), self._pre.input_shape
        if len(shape) != 4:
            raise ModelError(
                f"{self.path.name}: input {node.name!r} has rank {len(shape)} {shape}, "
                f"expected rank 4 {list(want)}"
            )
        # A symbolic first dimension (exports since build recipe 3) takes any batch size;
        # older files were exported with a fixed batch of 1 and still load.
        self._batch_capable = shape[0] is None or isinstance(shape[0], str)
        batch_ok = shape[0] == 1 or self._batch_capable
        if list(shape[1:]) != list(want[1:]) or not batch_ok:
            raise ModelError(
                f"{self.path.name}: input {node.name!r} has shape {shape}, but its metadata "
                f"(layout {self.info.layout}, input_size {self.info.input_size}) says {list(want)}"
            )
        want_type = "tensor(uint8)" if self.info.layout == LAYOUT_NHWC_UINT8 else "tensor(float)"
        if node.type != want_type:
            raise ModelError(
                f"{self.path.name}: input {node.name!r} is {node.type}, "
                f"layout {self.info.layout} needs {want_type}"
            )
        return node.name

    def _check_output(self, logits: np.ndarray) -> None:
        if logits.size != self.info.num_classes:
            raise ModelError(
                f"{self.path.name}: model outputs {logits.size} values but its metadata "
                f"lists {self.info.num_classes} labels"
            )

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        try:
            out = self._session.run([self._output_name], {self._input_name: tensor}, self._run_options)[0]
        except Exception as err:  # noqa: BLE001 - onnxruntime raises several private exception types
            raise ModelError(f"{self.path.name}: inference failed ({err})") from None
        if not np.isfinite(out).all():
            # A failed classification, never a result: NaN would reach MQTT and the JSON API.
            raise ModelError(f"{self.path.name}: the model gave non-finite outputs (NaN or infinity)")
        return out

    @property
    def input_dims(self) -> list:
        """The ONNX input shape: ints, and a name (str) or None for a dynamic axis."""
        return list(self._session.get_inputs()[0].shape)

    @property
    def batch_capable(self) -> bool:
        """True when the model takes any batch size in one run (a dynamic batch axis)."""
        return self._batch_capable

    def logits(self, bgr: np.ndarray) -> np.ndarray:
        """Raw model output (float32 vector of num_classes) for one BGR frame."""
        return self._run(self._pre(bgr)).reshape(-1)

    def logits_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Raw outputs, (N, num_classes) float32, for N BGR images of any sizes.

        Each image is preprocessed on its own (its own resize and centre crop); the
        tensors then go through the model in one run when it is batch-capable, else
        one run per image (fixed batch-1 files). Row i equals ``logits(images[i])``
        to float tolerance.
        """
        if len(images) == 0:
            return np.zeros((0, self.info.num_classes), np.float32)
        if self._batch_capable and len(images) > 1:
            return self.run_batch(self._pre.batch(list(images)))
        return np.stack([self._run(self._pre(image)).reshape(-1) for image in images])

    def probabilities_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Softmax probabilities, (N, num_classes) float32, for N BGR images."""
        return softmax_rows(self.logits_batch(images))

    def run_tensor(self, tensor: np.ndarray) -> np.ndarray:
        """Raw output for an already preprocessed input tensor (tests, benchmarks)."""
        return self._run(tensor).reshape(-1)

    def run_batch(self, tensor: np.ndarray) -> np.ndarray:
        """(N, num_classes) outputs for an (N, ...) preprocessed tensor; N > 1 needs batch_capable."""
        if tensor.shape[0] != 1 and not self._batch_capable:
            raise ModelError(f"{self.path.name}: this model takes a batch of 1 (exported before "
                             f"dynamic batches); got {tensor.shape[0]}")
        out = self._run(tensor)
        return out.reshape(tensor.shape[0], -1)

    def probabilities(self, bgr: np.ndarray) -> np.ndarray:
        """Softmax probabilities (float32, num_classes) for a BGR uint8 HxWx3 frame."""
        return softmax(self.logits(bgr))

    def top_k(self, probs: np.ndarray, k: int = 3) -> list[Label]:
        """The ``k`` most probable labels, best first."""
        k = max(1, min(int(k), probs.size))
        idx = np.argpartition(probs, -k)[-k:]
        idx = idx[np.argsort(probs[idx])[::-1]]
        labels = self.info.labels
        return [Label(label=labels[i], index=int(i), score=float(probs[i])) for i in idx]

    def classify(self, bgr: np.ndarray, k: int = 3) -> list[Label]:
        """Top-``k`` labels for one BGR frame (probabilities + top_k)."""
        return self.top_k(self.probabilities(bgr), k)
