"""Model building (torch, torchvision, onnx, onnxruntime.quantization): never imported by the daemon.

Heavy libraries are imported inside the functions, so importing this package is cheap.
"""

from edgecam.export.pipeline import (
    DEFAULT_LAYOUT,
    BuildOptions,
    build_model,
    ensure_default_model,
    output_paths,
    up_to_date,
)
from edgecam.export.report import BuildReport
from edgecam.export.weights import WeightsUnavailableError, load_model

__all__ = [
    "DEFAULT_LAYOUT",
    "BuildOptions",
    "BuildReport",
    "WeightsUnavailableError",
    "build_model",
    "ensure_default_model",
    "load_model",
    "output_paths",
    "up_to_date",
]
