"""Real ONNX models built by edgecam's own build code, cached for tests and harnesses.

Models are cached in ``<repo>/.cache/test-models/`` (gitignored) and reused when
their metadata says they were built with the same options, so reruns are fast; a
clean checkout (CI) builds them once. Calibration is kept small (``TEST_CALIB``
images) to keep the build short.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecam.export import BuildOptions, build_model, output_paths

ROOT = Path(__file__).resolve().parents[2]
MODEL_CACHE = ROOT / ".cache" / "test-models"
TEST_CALIB = 32
TEST_HOLDOUT = 40

# (name, skimage.data function) for the real photos scikit-image ships.
PHOTO_LOADERS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
    "immunohistochemistry", "camera", "coins", "moon", "brick", "grass", "gravel", "clock", "page",
)


@dataclass(frozen=True)
class ModelPair:
    """The FP32 and INT8 files of one build, and the options that made them."""

    fp32: Path
    int8: Path
    options: BuildOptions


def cached_build_options(arch: str, weights: str, size: int = 160, **extra) -> BuildOptions:
    """The options the fixtures build with (tests reuse them to hit the cache)."""
    return BuildOptions(
        arch=arch, weights=weights, size=size, out_dir=str(MODEL_CACHE),
        calib_count=TEST_CALIB, holdout_count=TEST_HOLDOUT, timing_runs=0, **extra,
    )




def build_pair(options: BuildOptions) -> ModelPair:
    build_model(options)  # no-op when the cached files match the options
    fp32, int8 = output_paths(options)
    return ModelPair(fp32, int8, options)
