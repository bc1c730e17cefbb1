"""The ImageNet backbone cut in three for transfer learning, and the engines that run it.

    input -> trunk (always frozen) -> tail (last stages: trained with --finetune)
          -> pooled features -> head (a new Linear layer, always trained)

Trunk outputs and pooled features are computed once per view and cached, so
the head (and with --finetune the tail) train on cached tensors. On a CPU the
frozen part runs on onnxruntime, the runtime the daemon uses (several times
faster than eager PyTorch on depthwise convolutions); on a GPU it runs in torch.
Both compute the same thing (tests/test_train_units.py compares them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.errors import ModelBuildError
from edgecam.export.export import INPUT_NAME, export_module
from edgecam.export.weights import TorchModel, load_model

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("auto", "onnxruntime", "torch")
# Where the trainable tail starts: ResNet-18's last stage (layer4); EfficientNet-Lite0's
# last two stages (blocks 11-15, 192 and 320 channels) and its 1x1 head convolution.
LITE_TAIL_START = 11
FINETUNED = {
    "resnet18": "layer4 (the last stage)",
    "efficientnet_lite0": f"blocks {LITE_TAIL_START}-15 and the head convolution (the last two stages)",
}


@dataclass
class Network:
    """One backbone with a new head; trunk/tail/head share the modules of ``module``."""

    arch: str
    size: int
    module: Any  # torch.nn.Module: the whole network, exported to ONNX at the end
    trunk: Any
    tail: Any
    head: Any  # torch.nn.Linear(feature_dim, num_classes)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def feature_dim(self) -> int:
        return int(self.head.in_features)

    def torch_model(self, labels: tuple[str, ...]) -> TorchModel:
        return TorchModel(self.module, self.arch, labels, self.mean, self.std, True, "imagenet+train")


def pick_device(choice: str) -> str:
    """``auto`` -> cuda when torch sees a GPU, else cpu; ``cuda`` without one is an error."""
    import torch

    if choice not in DEVICES:
        raise ModelBuildError(f"--device {choice!r}: choose from {', '.join(DEVICES)}")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    elif choice == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        raise ModelBuildError(
            f"--device cuda: torch {torch.__version__} sees no CUDA GPU (its CUDA: {built}); "
            "use --device cpu, or install a CUDA build of torch that matches the driver"
        )
    if choice == "cuda":
        _full_float32_on_gpu()
        log.info("GPU: %s", torch.cuda.get_device_name(0))
    return choice


def _full_float32_on_gpu() -> None:
    """No TF32: cuDNN convolutions default to it on Ampere and later, which changes the
    features by ~1e-3 relative. Training then computes what the CPU runtime computes
    (the export check compares the two to 1e-2). No AMP/autocast either."""
    import torch

    try:  # torch >= 2.9
        torch.backends.cudnn.conv.fp32_precision = "ieee"  # type: ignore[attr-defined]
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    except AttributeError:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def build_network(arch: str, size: int, num_classes: int, seed: int, weights: str = "imagenet") -> Network:
    """The ImageNet backbone of ``arch`` with a fresh ``num_classes`` head, in eval mode.

    ``weights="random"`` is for tests of the ResNet-18 split where its ImageNet
    weights cannot be had (offline).
    """
    import torch

    base = load_model(arch, weights, size)  # raises WeightsUnavailableError offline (resnet18)
    module = base.module.eval()
    torch.manual_seed(seed)
    if arch == "resnet18":
        module.fc = torch.nn.Linear(module.fc.in_features, num_classes)
        trunk: torch.nn.Module = torch.nn.Sequential(module.conv1, module.bn1, module.relu, module.maxpool,
                                    module.layer1, module.layer2, module.layer3)
        tail: torch.nn.Module = torch.nn.Sequential(module.layer4, module.avgpool, torch.nn.Flatten(1))
        head = module.fc
    else:
        module._fc = torch.nn.Linear(module._fc.in_features, num_classes)
        from edgecam.training.modules import LiteTail, LiteTrunk

        trunk, tail = LiteTrunk(module, LITE_TAIL_START), LiteTail(module, LITE_TAIL_START)
        head = module._fc
    for param in module.parameters():
        param.requires_grad_(False)
    return Network(arch, size, module, trunk.eval(), tail.eval(), head, base.mean, base.std)


class OrtEngine:
    """The frozen backbone exported to ONNX (FP32) and run on onnxruntime (CPU)."""

    name = "onnxruntime"

    def __init__(self, net: Network, with_trunk: bool, threads: int, folder: Path) -> None:
        import onnxruntime as ort
        import torch

        from edgecam.training.modules import Features

        path = folder / "features.onnx"
        outputs = ["pooled", "trunk"] if with_trunk else ["pooled"]
        example = torch.zeros(1, 3, net.size, net.size)
        features = Features(net.trunk, net.tail, with_trunk).eval()
        export_module(features, example, path, outputs, f"{net.arch} features")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._outputs = outputs

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        result = self._session.run(self._outputs, {INPUT_NAME: batch})
        return result[0], (result[1] if len(result) > 1 else None)


class TorchEngine:
    """The frozen backbone in torch, on ``device`` (a GPU, or the CPU for checks)."""

    name = "torch"

    def __init__(self, net: Network, with_trunk: bool, device: str) -> None:
        from edgecam.training.modules import Features

        self._module = Features(net.trunk, net.tail, with_trunk).eval().to(device)
        self._device = device
        self._with_trunk = with_trunk

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        with torch.inference_mode():
            # float32 throughout: no autocast/AMP, so GPU features match the CPU's closely.
            out = self._module(torch.from_numpy(batch).to(self._device))
        if self._with_trunk:
            return out[0].float().cpu().numpy(), out[1].float().cpu().numpy()
        return out.float().cpu().numpy(), None


def make_engine(engine: str, net: Network, with_trunk: bool, device: str, threads: int,
                folder: Path) -> OrtEngine | TorchEngine:
    """``auto``: onnxruntime on the CPU, torch on a GPU."""
    if engine not in ENGINES:
        raise ModelBuildError(f"--engine {engine!r}: choose from {', '.join(ENGINES)}")
    if engine == "onnxruntime" and device != "cpu":
        raise ModelBuildError("--engine onnxruntime runs on the CPU: use it with --device cpu")
    if engine == "torch" or (engine == "auto" and device != "cpu"):
        return TorchEngine(net, with_trunk, device)
    return OrtEngine(net, with_trunk, threads, folder)
