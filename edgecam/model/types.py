"""Plain value types shared by the classifier and everything downstream of it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Label:
    """One entry of a Top-k list."""

    label: str
    index: int
    score: float


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a model file says about itself (read from its ONNX metadata_props)."""

    name: str  # e.g. "resnet18_160_int8"
    arch: str  # "resnet18" | "efficientnet_lite0" | ...
    precision: str  # "int8" | "fp32"
    input_size: int  # square side in pixels, e.g. 160
    labels: tuple[str, ...] = field(repr=False)
    trained: bool  # False for --weights random
    weights: str  # "imagenet", "random", or a checkpoint path
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: str  # "RGB"
    layout: str  # "NCHW_float" or "NHWC_uint8": where normalization lives
    agreement: dict = field(default_factory=dict, repr=False)  # FP32-vs-INT8, from build time
    # Written by `edgecam train` (empty for ImageNet builds and for older files):
    dataset: dict = field(default_factory=dict, repr=False)  # fingerprint, per-class counts, split
    metrics: dict = field(default_factory=dict, repr=False)  # validation results, learning curve

    @property
    def num_classes(self) -> int:
        return len(self.labels)
