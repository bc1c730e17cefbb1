"""FP32 ONNX -> INT8 QDQ ONNX with onnxruntime.quantization (static, calibrated)."""

from __future__ import annotations

import logging
from pathlib import Path

from edgecam.errors import ModelBuildError
from edgecam.export.calibration import Named, make_reader
from edgecam.export.export import INPUT_NAME
from edgecam.model.preprocess import Preprocessor

log = logging.getLogger(__name__)

ACTIVATIONS = ("uint8", "int8")

# Layers kept in FP32 inside the INT8 model, per architecture (substring of node names).
# EfficientNet-Lite0's stem and first two blocks lose the most in INT8 (their
# depthwise channels have very unequal ranges); keeping them FP32 raised top-1
# agreement with FP32 on held-out photos from 80% to 94% for +0.5 ms at 160 px.
# Blocks 3, 4, 8, 9 and 11 came next in a per-block sensitivity scan (one block FP32 at a
# time, exact INT8 sums, 400 held-out views); with them, agreement on 400 *other* views
# went from 90.8% to 95.8% (docs/benchmarks.md, INT8 kernels). Calibration method
# (MinMax, Entropy, Percentile) and set size (96-1024 views) moved it by less than 1.5 points.
FP32_LAYERS = {"efficientnet_lite0": ("_conv_stem/", "_blocks.0/", "_blocks.1/", "_blocks.3/", "_blocks.4/",
                                      "_blocks.8/", "_blocks.9/", "_blocks.11/")}
# The NHWC_uint8 wrapper's own nodes (Transpose, Cast, Mul, Sub) stay FP32: one
# QuantizeLinear after them instead of a Q/DQ pair around each.
NORMALIZE_NODES = ("/Transpose", "/Cast", "/Mul", "/Sub")


def fp32_nodes(model_path: Path, arch: str, layers: tuple[str, ...] | None = None) -> list[str]:
    """Names of the nodes of ``model_path`` to leave unquantized (``layers``: other patterns
    than the architecture's FP32_LAYERS, for benchmarks)."""
    import onnx

    patterns = FP32_LAYERS.get(arch, ()) if layers is None else layers
    names = [node.name for node in onnx.load(str(model_path)).graph.node]
    return [n for n in names if n in NORMALIZE_NODES or any(p in n for p in patterns)]


def quantize_int8(
    fp32: Path,
    out: Path,
    calib: list[Named],
    pre: Preprocessor,
    activations: str = "uint8",
    arch: str = "",
    reduce_range: bool = False,
    fp32_layers: tuple[str, ...] | None = None,
) -> None:
    """Static INT8: pre-process, then QDQ with per-channel int8 weights.

    uint8 (asymmetric) activations are the default: measured ~3x faster than
    FP32 on onnxruntime's x86 kernels, and faster than int8 activations there.
    ``activations="int8"`` (symmetric) is offered for ARM targets, where
    onnxruntime's guide says symmetric int8 activations are often preferred.
    ``reduce_range``: 7-bit weights, whose pair sums cannot saturate 16 bits on x86 without
    VNNI (measured against exact kernels in ``python -m edgecam.bench.int8``).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if activations not in ACTIVATIONS:
        raise ModelBuildError(f"--activations {activations!r}: choose uint8 or int8")
    if not calib:
        raise ModelBuildError("no calibration images: cannot quantize")
    prepared = out.with_name(out.stem + ".prep.onnx")
    log.info("quantization: pre-processing %s (shape inference, graph optimization)", fp32.name)
    try:
        # onnx's own shape inference covers these CNNs: the symbolic pass (sympy) gave the same
        # nodes and weights (only value_info differed) for 550 MB of peak RSS and 4.5 s more.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        keep = fp32_nodes(prepared, arch, fp32_layers)
        if keep:
            log.info("quantization: keeping %d nodes in FP32 (%s)", len(keep), ", ".join(keep[:4]))
        log.info("quantization: calibrating on %d images (MinMax)", len(calib))
        quantize_static(
            str(prepared),
            str(out),
            make_reader(calib, pre, INPUT_NAME),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=keep,
            reduce_range=reduce_range,
            extra_options={"ActivationSymmetric": activations == "int8"},
        )
    except ModelBuildError:
        raise
    except Exception as err:
        raise ModelBuildError(f"INT8 quantization of {fp32.name} failed: {err}") from None
    finally:
        prepared.unlink(missing_ok=True)
