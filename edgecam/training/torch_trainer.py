"""The torch trainer: ``--finetune``, ``--device cuda`` and ``--trainer torch``.

The ImageNet network is built in torch (``network.py``), its frozen part runs on
onnxruntime (CPU) or torch (GPU) once over every view, the head (and with
--finetune the last stages) trains in torch, and the whole network is exported
to ONNX. Imports torch; only ``pipeline.train_model`` imports this module.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from edgecam.model.metadata import DEFAULT_LAYOUT, LAYOUT_NCHW_FLOAT
from edgecam.model.preprocess import Preprocessor
from edgecam.model.types import ModelInfo
from edgecam.training.dataset import Dataset
from edgecam.training.evaluate import learning_curve_indices
from edgecam.training.events import events
from edgecam.training.features import Cache, extract
from edgecam.training.fit import train_head, train_tail
from edgecam.training.network import (
    FINETUNED,
    Network,
    build_network,
    make_engine,
    pick_device,
)
from edgecam.training.options import (
    DEFAULT_ARCH,
    Clock,
    Trained,
    TrainOptions,
    default_threads,
)
from edgecam.training.recipe import HeadSettings, TailSettings

DEFAULT_SIZE = 160


def feature_info(arch: str, size: int, labels: tuple[str, ...], mean: tuple, std: tuple) -> ModelInfo:
    """What the runtime's Preprocessor needs to make float NCHW tensors for ``arch``."""
    return ModelInfo(
        name="features", arch=arch, precision="fp32", input_size=size, labels=labels,
        trained=True, weights="imagenet", mean=mean, std=std, color_order="RGB",
        layout=LAYOUT_NCHW_FLOAT,
    )


def train_torch(opts: TrainOptions, dataset: Dataset, name: str, tmp: Path, clock: Clock) -> Trained:
    arch, size = opts.arch or DEFAULT_ARCH, opts.size or DEFAULT_SIZE
    threads = default_threads(opts.threads)
    torch.set_num_threads(threads)
    device = pick_device(opts.device)
    net = build_network(arch, size, len(dataset.labels), opts.seed)
    pre = Preprocessor(feature_info(arch, size, dataset.labels, net.mean, net.std))
    clock.lap("load")
    engine = make_engine(opts.engine, net, opts.finetune, device, threads, tmp)
    events().emit("phase", phase="features", engine=engine.name, device=device)
    cache = extract(engine, dataset, pre, opts.views, opts.flip, opts.seed,
                    opts.cache_mb if opts.finetune else 0)
    clock.lap("features")
    training, curve = _fit(net, dataset, cache, opts, device, clock)
    training.update(device=device, engine=engine.name, trainer="torch")
    logits = _val_logits(net, cache, opts.finetune, device)
    info = ModelInfo(
        name=f"{name}_fp32", arch=arch, precision="fp32", input_size=size,
        labels=dataset.labels, trained=True, weights="imagenet, then edgecam train",
        mean=net.mean, std=net.std, color_order="RGB", layout=opts.layout or DEFAULT_LAYOUT,
    )
    fp32 = tmp / f"{name}_fp32.onnx"
    _export(net, dataset, info, fp32)
    return Trained(fp32, info, logits, training, curve)


def _fit(net: Network, dataset: Dataset, cache: Cache, opts: TrainOptions, device: str,
         clock: Clock) -> tuple[dict, list[dict]]:
    y_train = np.array([s.label for s in dataset.train], np.int64)
    y_val = np.array([s.label for s in dataset.val], np.int64)
    head_settings = HeadSettings(max_epochs=opts.head_epochs)
    curve = []
    if opts.learning_curve:
        events().emit("phase", phase="curve")
        for fraction, indices in learning_curve_indices(dataset, opts.seed):
            if fraction == 1.0:
                continue
            head = copy.deepcopy(net.head)
            x, y = cache.rows(indices, y_train)
            fit = train_head(head, x, y, cache.val_pooled, y_val, device, opts.seed,
                             head_settings, label=f"curve {fraction:.0%}")
            curve.append({"fraction": fraction, "images": len(indices), "accuracy": round(fit.val_accuracy, 4)})
        clock.lap("curve")
    events().emit("phase", phase="head")
    x, y = cache.rows(np.arange(len(dataset.train)), y_train)
    head_fit = train_head(net.head, x, y, cache.val_pooled, y_val, device, opts.seed, head_settings)
    curve.append({"fraction": 1.0, "images": len(dataset.train), "accuracy": round(head_fit.val_accuracy, 4)})
    training = {"arch": net.arch, "size": net.size, "views": opts.views, "flip": opts.flip,
                "seed": opts.seed, "head_epochs": f"{head_fit.epochs} (best {head_fit.best_epoch})",
                "finetuned": "no"}
    clock.lap("head")
    if opts.finetune:
        assert cache.trunk_train is not None and cache.trunk_val is not None  # extract kept them
        events().emit("phase", phase="fine-tune")
        tail_fit = train_tail(net.tail, net.head, cache.trunk_train, y_train, cache.trunk_val, y_val,
                              device, opts.seed, TailSettings(max_epochs=opts.finetune_epochs))
        training["finetuned"] = (f"{FINETUNED[net.arch]}: {tail_fit.epochs} epochs "
                                 f"(best {tail_fit.best_epoch}; 0 = head only)")
        clock.lap("finetune")
    return training, (curve if opts.learning_curve else [])


def _val_logits(net: Network, cache: Cache, finetuned: bool, device: str) -> np.ndarray:
    """The validation logits as torch computes them (compared with the exported file's)."""
    with torch.no_grad():
        if finetuned:
            pooled = net.tail.to(device)(torch.from_numpy(cache.trunk_val).to(device))
        else:
            pooled = torch.from_numpy(cache.val_pooled).to(device)
        return net.head.to(device)(pooled).float().cpu().numpy()


def _export(net: Network, dataset: Dataset, info: ModelInfo, fp32: Path) -> None:
    """FP32 ONNX of the trained network (metadata comes after)."""
    from edgecam.export.export import export_onnx

    events().emit("phase", phase="export")
    net.module.cpu().eval()
    export_onnx(net.torch_model(dataset.labels), info.input_size, info.layout, fp32)
