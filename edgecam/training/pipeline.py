"""``edgecam train``: ImageFolder -> features -> head (-> tail) -> FP32 + INT8 ONNX, report.

Every image reaches the network through the runtime's own ``Preprocessor``
(training views, validation, calibration), and the reported metrics are those
of the exported files run by the runtime's ``Classifier``: what is measured is
what the daemon will run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecam.errors import ModelBuildError
from edgecam.export.pipeline import SIZES
from edgecam.export.quantize import ACTIVATIONS
from edgecam.export.weights import ARCHS
from edgecam.model.metadata import DEFAULT_LAYOUT, LAYOUT_NCHW_FLOAT, LAYOUTS
from edgecam.model.preprocess import Preprocessor
from edgecam.model.types import ModelInfo
from edgecam.training.dataset import Dataset, load_dataset
from edgecam.training.evaluate import (
    add_verdict,
    calibration_images,
    evaluate,
    format_report,
    learning_curve_indices,
)
from edgecam.training.features import Cache, extract
from edgecam.training.metrics import data_warnings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    dataset: str
    arch: str = "efficientnet_lite0"
    out_dir: str = "models"
    name: str | None = None  # output file stem; default: the dataset folder's name
    size: int = 160
    finetune: bool = False
    flip: bool = True
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    engine: str = "auto"  # how frozen features are computed: auto | onnxruntime | torch
    threads: int = 0  # 0: half the CPUs (see default_threads)
    views: int = 4  # per training image: the image itself + random views
    head_epochs: int = 200
    finetune_epochs: int = 12
    calib_count: int = 96
    activations: str = "uint8"
    layout: str = DEFAULT_LAYOUT
    cache_mb: int = 1024  # memory for cached trunk outputs (--finetune)
    learning_curve: bool = True


@dataclass
class TrainResult:
    fp32: Path
    int8: Path
    png: Path
    report_file: Path
    info: ModelInfo  # of the INT8 file
    report: str
    seconds: float


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
    if opts.arch not in ARCHS:
        raise ModelBuildError(f"--arch {opts.arch!r}: choose from {', '.join(ARCHS)}")
    if opts.size not in SIZES:
        raise ModelBuildError(f"--size {opts.size}: use a multiple of 32 from 96 to 320")
    if opts.layout not in LAYOUTS:
        raise ModelBuildError(f"--layout {opts.layout!r}: choose from {', '.join(LAYOUTS)}")
    if opts.activations not in ACTIVATIONS:
        raise ModelBuildError(f"--activations {opts.activations!r}: choose uint8 or int8")
    for name in ("views", "head_epochs", "finetune_epochs", "calib_count", "cache_mb"):
        if getattr(opts, name) < 1:
            raise ModelBuildError(f"--{name.replace('_', '-')} {getattr(opts, name)}: must be at least 1")
    if opts.threads < 0:
        raise ModelBuildError(f"--threads {opts.threads}: must be 0 (half the CPUs) or more")
    if opts.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", opts.name):
        raise ModelBuildError(f"--name {opts.name!r}: use letters, digits, '.', '_' and '-'")


def default_threads(requested: int) -> int:
    """``requested``, or half the CPUs (at least 1) for 0.

    Not all of them: PyTorch's CPU threads wait for each other at every operation, so
    when another process holds a core (the daemon on the same Pi, a browser) each step
    waits for the slowest thread. Measured on a busy 2-CPU machine: fine-tuning took
    68.9 s with 2 threads and 12.6 s with 1 (README, Train your own classes).
    """
    return requested if requested > 0 else max(1, (os.cpu_count() or 2) // 2)


def model_name(opts: TrainOptions) -> str:
    if opts.name:
        return opts.name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(opts.dataset).resolve().name).strip("._-")
    return stem or "custom"


def feature_info(arch: str, size: int, labels: tuple[str, ...], mean: tuple, std: tuple) -> ModelInfo:
    """What the runtime's Preprocessor needs to make float NCHW tensors for ``arch``."""
    return ModelInfo(
        name="features", arch=arch, precision="fp32", input_size=size, labels=labels,
        trained=True, weights="imagenet", mean=mean, std=std, color_order="RGB",
        layout=LAYOUT_NCHW_FLOAT,
    )


def train_model(opts: TrainOptions) -> TrainResult:
    """Train, export and report; the outputs replace OUT/<name>_* only once all are complete."""
    validate(opts)
    clock = Clock()
    dataset = load_dataset(opts.dataset, opts.val_fraction, opts.seed)
    log.info("dataset %s: %d classes (%s), %d training and %d validation images; %s",
             dataset.root, len(dataset.labels), ", ".join(dataset.labels), len(dataset.train),
             len(dataset.val), dataset.split)
    warnings = data_warnings(dataset.totals())
    for text in warnings:
        log.warning("warning: %s", text)

    import torch

    from edgecam.training.network import build_network, make_engine, pick_device

    threads = default_threads(opts.threads)
    torch.set_num_threads(threads)
    device = pick_device(opts.device)
    net = build_network(opts.arch, opts.size, len(dataset.labels), opts.seed)
    pre = Preprocessor(feature_info(opts.arch, opts.size, dataset.labels, net.mean, net.std))
    clock.lap("load")
    out_dir = Path(opts.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".train-", dir=out_dir) as tmp:
        engine = make_engine(opts.engine, net, opts.finetune, device, threads, Path(tmp))
        log.info("features: %s on %s, %d views per training image", engine.name, device, opts.views)
        cache = extract(engine, dataset, pre, opts.views, opts.flip, opts.seed,
                        opts.cache_mb if opts.finetune else 0)
        clock.lap("features")
        training = _fit(net, dataset, cache, opts, device, clock)
        training.update(device=device, engine=engine.name)
        return _finish(net, dataset, opts, Path(tmp), out_dir, warnings, training, clock)


def _fit(net, dataset: Dataset, cache: Cache, opts: TrainOptions, device: str, clock: Clock) -> dict:
    import copy

    from edgecam.training.fit import HeadSettings, TailSettings, train_head, train_tail
    from edgecam.training.network import FINETUNED

    y_train = np.array([s.label for s in dataset.train], np.int64)
    y_val = np.array([s.label for s in dataset.val], np.int64)
    head_settings = HeadSettings(max_epochs=opts.head_epochs)
    curve = []
    if opts.learning_curve:
        for fraction, indices in learning_curve_indices(dataset, opts.seed):
            if fraction == 1.0:
                continue
            head = copy.deepcopy(net.head)
            x, y = cache.rows(indices, y_train)
            fit = train_head(head, x, y, cache.val_pooled, y_val, device, opts.seed,
                             head_settings, label=f"curve {fraction:.0%}")
            curve.append({"fraction": fraction, "images": len(indices), "accuracy": round(fit.val_accuracy, 4)})
        clock.lap("curve")
    x, y = cache.rows(np.arange(len(dataset.train)), y_train)
    head_fit = train_head(net.head, x, y, cache.val_pooled, y_val, device, opts.seed, head_settings)
    curve.append({"fraction": 1.0, "images": len(dataset.train), "accuracy": round(head_fit.val_accuracy, 4)})
    training = {"arch": opts.arch, "size": opts.size, "views": opts.views, "flip": opts.flip,
                "seed": opts.seed, "head_epochs": f"{head_fit.epochs} (best {head_fit.best_epoch})",
                "finetuned": "no", "learning_curve": curve if opts.learning_curve else []}
    clock.lap("head")
    if opts.finetune:
        tail_fit = train_tail(net.tail, net.head, cache.trunk_train, y_train, cache.trunk_val, y_val,
                              device, opts.seed, TailSettings(max_epochs=opts.finetune_epochs))
        training["finetuned"] = (f"{FINETUNED[opts.arch]}: {tail_fit.epochs} epochs "
                                 f"(best {tail_fit.best_epoch}; 0 = head only)")
        clock.lap("finetune")
    training["torch_val_logits"] = _val_logits(net, cache, opts.finetune, device)
    return training


def _val_logits(net, cache: Cache, finetuned: bool, device: str) -> np.ndarray:
    """The validation logits as torch computes them (compared with the exported file's)."""
    import torch

    with torch.no_grad():
        if finetuned:
            pooled = net.tail.to(device)(torch.from_numpy(cache.trunk_val).to(device))
        else:
            pooled = torch.from_numpy(cache.val_pooled).to(device)
        return net.head.to(device)(pooled).float().cpu().numpy()


def _finish(net, dataset: Dataset, opts: TrainOptions, tmp: Path, out_dir: Path,
            warnings: list[str], training: dict, clock: Clock) -> TrainResult:
    """Export, quantize on training images, measure the files, write everything."""
    from edgecam.export.metadata import write_metadata
    from edgecam.export.pipeline import RECIPE
    from edgecam.model.classifier import Classifier

    name, threads = model_name(opts), default_threads(opts.threads)
    torch_logits = training.pop("torch_val_logits")
    curve = training.pop("learning_curve")
    key = {"recipe": RECIPE, "trained_on": dataset.fingerprint, "seed": opts.seed}
    info = ModelInfo(
        name=f"{name}_fp32", arch=opts.arch, precision="fp32", input_size=opts.size,
        labels=dataset.labels, trained=True, weights="imagenet, then edgecam train",
        mean=net.mean, std=net.std, color_order="RGB", layout=opts.layout,
    )
    fp32, int8 = _export(net, dataset, opts, info, key, tmp / f"{name}_fp32.onnx", tmp / f"{name}_int8.onnx")
    clock.lap("export+int8")
    metrics = evaluate(Classifier(fp32, threads=threads), Classifier(int8, threads=threads),
                       dataset, torch_logits)
    agreement = metrics.pop("agreement")
    metrics["warnings"] = warnings + metrics.pop("extra_warnings")
    metrics["learning_curve"] = curve
    add_verdict(metrics)
    clock.lap("validation")
    metrics["training"] = {**training, "seconds": clock.total(), "stages_s": clock.text()}
    fp32_info = dataclasses.replace(info, dataset=dataset.summary(), metrics=metrics)
    int8_info = dataclasses.replace(fp32_info, name=f"{name}_int8", precision="int8", agreement=agreement)
    write_metadata(fp32, fp32_info, key)
    write_metadata(int8, int8_info, key)
    return _publish(name, tmp, out_dir, fp32, int8, int8_info)


def _export(net, dataset: Dataset, opts: TrainOptions, info: ModelInfo, key: dict,
            fp32: Path, int8: Path) -> tuple[Path, Path]:
    """FP32 ONNX of the trained network, then INT8 calibrated on training images."""
    from edgecam.export.export import export_onnx
    from edgecam.export.metadata import write_metadata
    from edgecam.export.quantize import quantize_int8
    from edgecam.model.classifier import Classifier

    net.module.cpu().eval()
    export_onnx(net.torch_model(dataset.labels), opts.size, opts.layout, fp32)
    write_metadata(fp32, info, key)
    calib = calibration_images(dataset, opts.calib_count)
    log.info("INT8: calibrating on %d training images", len(calib))
    pre = Classifier(fp32, threads=1).preprocessor  # the runtime's, for the file's layout
    quantize_int8(fp32, int8, calib, pre, opts.activations, opts.arch)
    write_metadata(int8, dataclasses.replace(info, name=info.name.replace("_fp32", "_int8"),
                                             precision="int8"), key)
    return fp32, int8


def _publish(name: str, tmp: Path, out_dir: Path, fp32: Path, int8: Path, info: ModelInfo) -> TrainResult:
    """The confusion PNG and the report; then every file moves into ``out_dir``."""
    from edgecam.training.plot import write_confusion_png

    metrics = info.metrics
    png = tmp / f"{name}_confusion.png"
    title = (f"{name}: INT8 on {metrics['val_images']} validation images, "
             f"accuracy {metrics['accuracy']['int8']:.1%}")
    write_confusion_png(np.array(metrics["confusion"]), info.labels, title, png)
    finals = {p.name: out_dir / p.name for p in (fp32, int8, png)}
    report_file = out_dir / f"{name}_report.txt"
    for src in (fp32, int8, png):
        os.replace(src, finals[src.name])  # atomic: a watcher never sees half a model
    files = [(finals[int8.name], "(the daemon runs this one)"), (finals[fp32.name], ""),
             (finals[png.name], "(confusion matrix)"), (report_file, "")]
    report = format_report(info, files)
    report_file.write_text(report + "\n", encoding="utf-8")
    log.info("wrote %s", ", ".join(str(p) for p, _ in files))
    return TrainResult(finals[fp32.name], finals[int8.name], finals[png.name], report_file,
                       info, report, float(metrics["training"]["seconds"]))
