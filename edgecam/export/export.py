"""PyTorch -> single-file FP32 ONNX, with or without normalization inside the graph."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from edgecam.errors import ModelBuildError
from edgecam.export.weights import TorchModel
from edgecam.model.metadata import LAYOUT_NHWC_UINT8

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"  # symbolic name of the dynamic first dimension


def wrap_for_layout(model: TorchModel, layout: str) -> Any:
    """The module to export: as is for NCHW float, with uint8 NHWC input for NHWC_uint8.

    The NHWC wrapper puts Transpose/Cast/Mul/Sub first in the graph, so the
    runtime hands over the RGB crop without any float work in numpy.
    """
    import torch

    if layout != LAYOUT_NHWC_UINT8:
        return model.module

    class NormalizeNHWC(torch.nn.Module):
        def __init__(self, net: torch.nn.Module, mean: tuple, std: tuple) -> None:
            super().__init__()
            self.net = net
            std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
            mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
            self.scale: torch.Tensor
            self.offset: torch.Tensor
            self.register_buffer("scale", 1.0 / (255.0 * std_t))
            self.register_buffer("offset", mean_t / std_t)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.permute(0, 3, 1, 2).float()
            return self.net(x * self.scale - self.offset)

    return NormalizeNHWC(model.module, model.mean, model.std).eval()


def example_input(size: int, layout: str) -> Any:
    import torch

    if layout == LAYOUT_NHWC_UINT8:
        return torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8)
    return torch.randn(1, 3, size, size)


def export_onnx(model: TorchModel, size: int, layout: str, out: Path) -> None:
    """Write the FP32 ONNX (opset 17, dynamic batch, every weight inside the one file)."""
    module = wrap_for_layout(model, layout)
    # EfficientNet-Lite uses ReLU6 (no custom Swish autograd function): exports as is.
    # Do NOT call its set_swish(): that would replace ReLU6 with Swish.
    log.info("exporting %s (%dx%d, %s) to ONNX", model.arch, size, size, layout)
    export_module(module, example_input(size, layout), out, [OUTPUT_NAME], model.arch)


def export_module(module: Any, example: Any, out: Path, outputs: list[str], what: str) -> None:
    """torch.onnx.export with edgecam's settings: one input, a dynamic batch axis on
    the input and every output (the daemon batches regions due together)."""
    import torch

    axes = {name: {0: BATCH_AXIS} for name in [INPUT_NAME, *outputs]}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter (dynamo=False) writes one self-contained file
            # at opset 17; the dynamo exporter targets 18 and splits out weights.
            torch.onnx.export(
                module,
                (example,),
                str(out),
                input_names=[INPUT_NAME],
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
                external_data=False,
                do_constant_folding=True,
            )
    except Exception as err:
        raise ModelBuildError(f"ONNX export of {what} failed: {err}") from None
    check_single_file(out)


def check_single_file(path: Path) -> None:
    """Fail if the ONNX file refers to external weight files (it must stand alone)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    external = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ModelBuildError(f"{path.name} keeps {len(external)} weights in a side file")
    side = path.with_name(path.name + ".data")
    if side.exists():
        raise ModelBuildError(f"{path.name} was written with a side file {side.name}")
