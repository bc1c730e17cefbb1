"""What ``edgecam train`` is asked to do (``TrainOptions``), which trainer does it, and what
a trainer hands over (``Trained``). Shared by the pipeline and both trainers; no torch."""

from __future__ import annotations

import importlib.util
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecam.errors import ModelBuildError
from edgecam.export.pipeline import SIZES
from edgecam.export.quantize import ACTIVATIONS
from edgecam.export.weights import ARCHS
from edgecam.images.header import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from edgecam.model.metadata import LAYOUTS
from edgecam.model.types import ModelInfo

TRAINERS = ("auto", "onnx", "torch")
DEFAULT_ARCH = "efficientnet_lite0"


@dataclass(frozen=True)
class TrainOptions:
    dataset: str
    arch: str | None = None  # None: the backbone file's (onnx), efficientnet_lite0 (torch)
    out_dir: str = "models"
    name: str | None = None  # output file stem; default: <camera>_<region>, or the folder's name
    size: int | None = None  # None: the backbone file's (onnx), 160 (torch)
    finetune: bool = False
    flip: bool = True
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda (cuda: the torch trainer)
    engine: str = "auto"  # torch trainer: how frozen features are computed: auto | onnxruntime | torch
    trainer: str = "auto"  # auto | onnx (no torch) | torch
    backbone: str | None = None  # onnx trainer: the model file to cut the backbone from
    threads: int = 0  # 0: half the CPUs (see default_threads)
    views: int = 4  # per training image: the image itself + random views
    head_epochs: int = 200
    finetune_epochs: int = 12
    calib_count: int = 96
    activations: str = "uint8"
    layout: str | None = None  # None: the backbone file's (onnx), DEFAULT_LAYOUT (torch)
    cache_mb: int = 1024  # memory for cached trunk outputs (--finetune)
    learning_curve: bool = True
    force: bool = False  # replace OUT/<name>_* even when they belong to another region
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_image_bytes: int = MAX_IMAGE_BYTES


@dataclass
class Trained:
    """What a trainer hands over: the FP32 file (no metadata yet) and how it came about."""

    fp32: Path
    info: ModelInfo  # of the FP32 file, without dataset and metrics
    trained_logits: np.ndarray  # the trained network's answer on the validation images
    training: dict  # the report's "training" entries
    curve: list[dict]  # the learning curve's points


class Clock:
    """Seconds spent per stage, for the report (where the time goes)."""

    def __init__(self) -> None:
        self.start = self.mark = time.monotonic()
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.stages[stage] = round(self.stages.get(stage, 0.0) + now - self.mark, 1)
        self.mark = now

    def total(self) -> float:
        return round(time.monotonic() - self.start, 1)

    def text(self) -> str:
        return ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in self.stages.items())


def validate(opts: TrainOptions) -> None:
    if opts.arch is not None and opts.arch not in ARCHS:
        raise ModelBuildError(f"--arch {opts.arch!r}: choose from {', '.join(ARCHS)}")
    if opts.size is not None and opts.size not in SIZES:
        raise ModelBuildError(f"--size {opts.size}: use a multiple of 32 from 96 to 320")
    if opts.layout is not None and opts.layout not in LAYOUTS:
        raise ModelBuildError(f"--layout {opts.layout!r}: choose from {', '.join(LAYOUTS)}")
    if opts.activations not in ACTIVATIONS:
        raise ModelBuildError(f"--activations {opts.activations!r}: choose uint8 or int8")
    if opts.trainer not in TRAINERS:
        raise ModelBuildError(f"--trainer {opts.trainer!r}: choose from {', '.join(TRAINERS)}")
    for name in ("views", "head_epochs", "finetune_epochs", "calib_count", "cache_mb",
                 "max_image_pixels", "max_image_bytes"):
        if getattr(opts, name) < 1:
            raise ModelBuildError(f"--{name.replace('_', '-')} {getattr(opts, name)}: must be at least 1")
    if opts.threads < 0:
        raise ModelBuildError(f"--threads {opts.threads}: must be 0 (half the CPUs) or more")
    if opts.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", opts.name):
        raise ModelBuildError(f"--name {opts.name!r}: use letters, digits, '.', '_' and '-'")
    if opts.trainer == "onnx" and (opts.finetune or opts.device == "cuda"):
        raise ModelBuildError("--trainer onnx trains the head only, on the CPU: "
                              "--finetune and --device cuda need --trainer torch (or auto)")
    if which_trainer(opts) == "torch" and not torch_installed():
        raise ModelBuildError("--finetune, --device cuda and --trainer torch need torch, which is not "
                              "installed here (pip install -r requirements-dev.txt); head-only training "
                              "on the CPU does not")
    if opts.backbone is not None and which_trainer(opts) == "torch":
        raise ModelBuildError("--backbone is for head-only training without torch: "
                              "drop it with --finetune, --device cuda or --trainer torch")


def which_trainer(opts: TrainOptions) -> str:
    """``auto``: torch for --finetune or --device cuda, else the torch-free trainer."""
    if opts.trainer != "auto":
        return opts.trainer
    if opts.finetune or opts.device == "cuda" or opts.engine == "torch":
        return "torch"
    return "onnx"


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def default_threads(requested: int) -> int:
    """``requested``, or half the CPUs (at least 1) for 0.

    Not all of them: PyTorch's CPU threads wait for each other at every operation, so
    when another process holds a core (the daemon on the same Pi, a browser) each step
    waits for the slowest thread. Measured on a busy 2-CPU machine: fine-tuning took
    68.9 s with 2 threads and 12.6 s with 1 (docs/training.md).
    """
    return requested if requested > 0 else max(1, (os.cpu_count() or 2) // 2)
