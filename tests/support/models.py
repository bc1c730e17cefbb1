"""Model fixtures: real ONNX models built by edgecam's own build code.

Models are cached in ``<repo>/.cache/test-models/`` (gitignored) and reused
when their metadata says they were built with the same options, so reruns are
fast; a clean checkout (CI) builds them once per session. Calibration is kept
small (``TEST_CALIB`` images) to keep the build short.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.bench.models import MODEL_CACHE, PHOTO_LOADERS, ModelPair, build_pair, cached_build_options


@pytest.fixture(scope="session")
def effnet_models() -> ModelPair:
    """EfficientNet-Lite0, real ImageNet weights, 160 px, FP32 + INT8."""
    return build_pair(cached_build_options("efficientnet_lite0", "imagenet"))


@pytest.fixture(scope="session")
def resnet_random_models() -> ModelPair:
    """ResNet-18 with random (untrained, seeded) weights, 160 px, FP32 + INT8."""
    return build_pair(cached_build_options("resnet18", "random"))


@pytest.fixture(scope="session")
def resnet_int8(resnet_random_models: ModelPair) -> Path:
    """The model the daemon tests run: ResNet-18 random weights, INT8, 160 px."""
    return resnet_random_models.int8


@pytest.fixture(scope="session")
def resnet_random_nhwc_models() -> ModelPair:
    """ResNet-18 random, 96 px, normalization inside the graph (NHWC uint8 input)."""
    options = cached_build_options("resnet18", "random", size=96, layout="NHWC_uint8")
    return build_pair(dataclasses.replace(options, out_dir=str(MODEL_CACHE / "nhwc")))


@pytest.fixture(scope="session")
def real_photos() -> list[tuple[str, np.ndarray]]:
    """(name, BGR uint8) for real photos from skimage.data; grey ones as 3-channel BGR."""
    import skimage.data

    photos = []
    for name in PHOTO_LOADERS:
        image = getattr(skimage.data, name)()
        code = cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR
        photos.append((name, cv2.cvtColor(image, code)))
    left, right, _ = skimage.data.stereo_motorcycle()
    photos.append(("motorcycle_left", cv2.cvtColor(left, cv2.COLOR_RGB2BGR)))
    photos.append(("motorcycle_right", cv2.cvtColor(right, cv2.COLOR_RGB2BGR)))
    return photos


def two_label_model(path: Path) -> Path:
    """A real ONNX classifier with the labels closed/open: always "closed" (0.88), whatever it sees."""
    import onnx
    from onnx import TensorProto, helper

    from edgecam.model.metadata import info_to_props
    from edgecam.model.types import ModelInfo

    info = ModelInfo(name="door", arch="tiny", precision="fp32", input_size=32, labels=("closed", "open"),
                     trained=False, weights="random", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), color_order="RGB",
                     layout="NCHW_float")
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], np.zeros(6, np.float32))
    bias = helper.make_tensor("b", TensorProto.FLOAT, [2], np.array([2.0, 0.0], np.float32))
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["pooled"], keepdims=0, axes=[2, 3]),
         helper.make_node("MatMul", ["pooled", "w"], ["mixed"]),
         helper.make_node("Add", ["mixed", "b"], ["logits"])], "door",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])], initializer=[weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in info_to_props(info).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path
