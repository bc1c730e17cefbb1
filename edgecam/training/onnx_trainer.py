"""The torch-free trainer: head-only training on the CPU, the default.

Needs the runtime requirements plus ``onnx``: requirements-train.txt.
    backbone  an edgecam model file, cut at the pooled features (``backbone.py``)
    features  that graph on onnxruntime over every view (``features.py``)
    head      softmax regression in numpy (``head.py``), the torch trainer's recipe
    export    the head grafted into the backbone file's graph
INT8, validation and the report are the pipeline's, as for the torch trainer.

Where the backbone comes from: ``--backbone FILE``, else the model that
``edgecam model build`` wrote into the output folder (``OUT/<arch>_<size>_fp32.onnx``,
else its ``_int8.onnx``; EfficientNet-Lite0 first, then ResNet-18, at 160 px unless
--arch/--size say otherwise). Without any, on a machine with torch, the ImageNet
network is exported into the temporary folder (that imports torch once); without
torch, the error names the file to copy there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgecam.errors import ModelBuildError
from edgecam.export.weights import ARCHS
from edgecam.model.preprocess import Preprocessor
from edgecam.model.types import ModelInfo
from edgecam.training.backbone import (
    FEATURES_OUTPUT,
    Backbone,
    features_model,
    graft,
    load_backbone,
)
from edgecam.training.dataset import Dataset
from edgecam.training.evaluate import learning_curve_indices
from edgecam.training.events import events
from edgecam.training.features import extract
from edgecam.training.head import train_head
from edgecam.training.options import (
    DEFAULT_ARCH,
    Clock,
    Trained,
    TrainOptions,
    default_threads,
    torch_installed,
)
from edgecam.training.recipe import HeadSettings

log = logging.getLogger(__name__)

DEFAULT_SIZE = 160
# Views per onnxruntime run. Measured (EfficientNet-Lite0 160 px, 2 threads, 800 views, AMD EPYC):
# CPU time 4.1-4.9 s at batch 1-8 and 6.7 s at 32; peak RSS 188 / 208 / 234 / 296 / 352 MB at
# batch 1 / 2 / 4 / 8 / 32: large batches only spill the caches and hold more activations.
BATCH = 4


class BackboneEngine:
    """The backbone's features graph on onnxruntime (CPU), ``threads`` intra-op threads."""

    name = "onnxruntime"

    def __init__(self, backbone: Backbone, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # As the daemon's sessions: no busy-waiting pool threads (they would take the
        # daemon's CPU while this process preprocesses), no arena holding freed blocks.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(features_model(backbone), options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, None]:
        return self._session.run([FEATURES_OUTPUT], {self._input: batch})[0], None


def candidates(opts: TrainOptions) -> list[Path]:
    """The files looked for in the output folder, in order."""
    archs = [opts.arch] if opts.arch else [DEFAULT_ARCH] + [a for a in ARCHS if a != DEFAULT_ARCH]
    size = opts.size or DEFAULT_SIZE
    out = Path(opts.out_dir)
    return [out / f"{arch}_{size}_{precision}.onnx" for arch in archs for precision in ("fp32", "int8")]


def find_backbone(opts: TrainOptions, tmp: Path) -> Backbone:
    if opts.backbone:
        return load_backbone(opts.backbone)
    for path in candidates(opts):
        if path.is_file():
            return load_backbone(path)
    arch, size = opts.arch or DEFAULT_ARCH, opts.size or DEFAULT_SIZE
    looked = ", ".join(p.name for p in candidates(opts)[:2])
    if not torch_installed():
        raise ModelBuildError(
            f"no backbone: training without torch cuts it from a model built by `edgecam model build "
            f"--arch {arch} --size {size}` ({looked}, looked for in {opts.out_dir}/). Copy that file "
            "there (the daemon's INT8 file works too), or pass --backbone FILE"
        )
    log.info("no backbone file (%s in %s/): exporting the ImageNet %s with torch "
             "(`edgecam model build --arch %s` once saves this step)", looked, opts.out_dir, arch, arch)
    return load_backbone(_export_imagenet(arch, size, tmp))


def _export_imagenet(arch: str, size: int, tmp: Path) -> Path:
    from edgecam.export.export import export_onnx
    from edgecam.export.metadata import write_metadata
    from edgecam.export.weights import load_model
    from edgecam.model.metadata import LAYOUT_NCHW_FLOAT

    model = load_model(arch, "imagenet", size)
    path = tmp / f"{arch}_{size}_backbone.onnx"
    export_onnx(model, size, LAYOUT_NCHW_FLOAT, path)
    info = ModelInfo(name=path.stem, arch=arch, precision="fp32", input_size=size, labels=model.labels,
                     trained=True, weights="imagenet", mean=model.mean, std=model.std,
                     color_order="RGB", layout=LAYOUT_NCHW_FLOAT)
    write_metadata(path, info, {"recipe": "backbone"})
    return path


def _check(backbone: Backbone, opts: TrainOptions) -> None:
    info, source = backbone.info, backbone.path.name
    if not info.trained:
        raise ModelBuildError(f"backbone {source}: its weights are random (untrained): its features "
                              "mean nothing; use an ImageNet build")
    asked = {"--arch": (opts.arch, info.arch), "--size": (opts.size, info.input_size),
             "--layout": (opts.layout, info.layout)}
    for option, (wanted, has) in asked.items():
        if wanted is not None and wanted != has:
            raise ModelBuildError(f"{option} {wanted}: the backbone {source} is {has}; "
                                  f"build one with `edgecam model build {option} {wanted}` or drop {option}")


def train_onnx(opts: TrainOptions, dataset: Dataset, name: str, tmp: Path, clock: Clock) -> Trained:
    backbone = find_backbone(opts, tmp)
    _check(backbone, opts)
    threads = default_threads(opts.threads)
    engine = BackboneEngine(backbone, threads)
    pre = Preprocessor(backbone.info)
    clock.lap("load")
    events().emit("phase", phase="features", engine=engine.name, device="cpu", backbone=backbone.describe())
    log.info("features: %s on cpu, %d views per training image", engine.name, opts.views)
    cache = extract(engine, dataset, pre, opts.views, opts.flip, opts.seed, 0, batch=BATCH)
    del engine
    clock.lap("features")
    y_train = np.array([s.label for s in dataset.train], np.int64)
    y_val = np.array([s.label for s in dataset.val], np.int64)
    settings = HeadSettings(max_epochs=opts.head_epochs)
    classes = len(dataset.labels)
    curve = []
    if opts.learning_curve:
        events().emit("phase", phase="curve")
        for fraction, indices in learning_curve_indices(dataset, opts.seed):
            if fraction < 1.0:
                x, y = cache.rows(indices, y_train)
                _, fit = train_head(x, y, cache.val_pooled, y_val, classes, opts.seed, settings,
                                    label=f"curve {fraction:.0%}")
                curve.append({"fraction": fraction, "images": len(indices), "accuracy": round(fit.val_accuracy, 4)})
        clock.lap("curve")
    events().emit("phase", phase="head")
    x, y = cache.rows(np.arange(len(dataset.train)), y_train)
    head, fit = train_head(x, y, cache.val_pooled, y_val, classes, opts.seed, settings)
    curve.append({"fraction": 1.0, "images": len(dataset.train), "accuracy": round(fit.val_accuracy, 4)})
    clock.lap("head")
    events().emit("phase", phase="export")
    info = ModelInfo(
        name=f"{name}_fp32", arch=backbone.info.arch, precision="fp32", input_size=backbone.info.input_size,
        labels=dataset.labels, trained=True, weights="imagenet, then edgecam train",
        mean=backbone.info.mean, std=backbone.info.std, color_order=backbone.info.color_order,
        layout=backbone.info.layout,
    )
    fp32 = tmp / f"{name}_fp32.onnx"
    graft(backbone, head.weight, head.bias, fp32)
    training = {"arch": info.arch, "size": info.input_size, "views": opts.views, "flip": opts.flip,
                "seed": opts.seed, "head_epochs": f"{fit.epochs} (best {fit.best_epoch})", "finetuned": "no",
                "device": "cpu", "engine": "onnxruntime", "trainer": "numpy (no torch)",
                "backbone": backbone.describe()}
    return Trained(fp32, info, head.logits(cache.val_pooled), training, curve if opts.learning_curve else [])
