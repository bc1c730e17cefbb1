"""``edgecam train``: ImageFolder -> features -> head (-> tail) -> FP32 + INT8 ONNX, report.

Two trainers make the FP32 model (``Trained``); everything after is shared:
* ``onnx_trainer`` (head only on the CPU, the default): no torch. The backbone is
  cut from an edgecam ONNX model, features run on onnxruntime, the head trains in
  numpy and is grafted into the graph.
* ``torch_trainer`` (``--finetune``, ``--device cuda``, ``--trainer torch``): the
  network in torch, exported to ONNX.

Every image reaches the network through the runtime's own ``Preprocessor``
(training views, validation, calibration), and the reported metrics are those
of the exported files run by the runtime's ``Classifier``: what is measured is
what the daemon will run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecam.model.types import ModelInfo
from edgecam.training.dataset import Dataset, ReadLimits, load_dataset
from edgecam.training.evaluate import (
    add_verdict,
    calibration_images,
    evaluate,
    format_report,
)
from edgecam.training.events import events, shielded
from edgecam.training.metrics import data_warnings
from edgecam.training.naming import (
    Origin,
    check_owner,
    default_name,
    origin_of,
    output_files,
)
from edgecam.training.options import (
    Clock,
    Trained,
    TrainOptions,
    default_threads,
    validate,
    which_trainer,
)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    fp32: Path
    int8: Path
    png: Path
    report_file: Path
    info: ModelInfo  # of the INT8 file
    report: str
    seconds: float


def model_name(opts: TrainOptions, origin: Origin | None = None) -> str:
    if opts.name:
        return opts.name
    return default_name(origin or origin_of(Path(opts.dataset)))


def train_model(opts: TrainOptions) -> TrainResult:
    """Train, export and report; the outputs replace OUT/<name>_* only once all are complete."""
    validate(opts)
    clock = Clock()
    limits = ReadLimits(opts.max_image_pixels, opts.max_image_bytes)
    events().emit("phase", phase="dataset")
    dataset = load_dataset(opts.dataset, opts.val_fraction, opts.seed, limits)
    origin = origin_of(dataset.root)
    name = model_name(opts, origin)
    out_dir = Path(opts.out_dir)
    check_owner(out_dir, name, origin, opts.force)  # before minutes of work, and again at the end
    log.info("dataset %s: %d classes (%s), %d training and %d validation images; %s",
             dataset.root, len(dataset.labels), ", ".join(dataset.labels), len(dataset.train),
             len(dataset.val), dataset.split)
    warnings = data_warnings(dataset.totals())  # printed once, in the report
    left_out = [{"file": file, "why": why} for file, why in dataset.why.items()]
    events().emit("dataset", name=name, labels=list(dataset.labels), counts=dataset.totals(),
                  train=len(dataset.train), val=len(dataset.val), left_out=left_out,
                  warnings=warnings, **origin.summary())
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".train-", dir=out_dir) as tmp:
        if which_trainer(opts) == "torch":
            from edgecam.training.torch_trainer import train_torch

            trained = train_torch(opts, dataset, name, Path(tmp), clock)
        else:
            from edgecam.training.onnx_trainer import train_onnx

            trained = train_onnx(opts, dataset, name, Path(tmp), clock)
        return _finish(trained, dataset, opts, origin, name, Path(tmp), out_dir, warnings, clock)


def _finish(trained: Trained, dataset: Dataset, opts: TrainOptions, origin: Origin, name: str,
            tmp: Path, out_dir: Path, warnings: list[str], clock: Clock) -> TrainResult:
    """INT8 calibrated on training images, the files measured, everything written."""
    from edgecam.export.metadata import write_metadata
    from edgecam.export.pipeline import RECIPE
    from edgecam.export.quantize import quantize_int8
    from edgecam.model.classifier import Classifier

    threads = default_threads(opts.threads)
    info, fp32, int8 = trained.info, trained.fp32, tmp / f"{name}_int8.onnx"
    key = {"recipe": RECIPE, "trained_on": dataset.fingerprint, "seed": opts.seed}
    write_metadata(fp32, info, key)
    events().emit("phase", phase="int8")
    pre = Classifier(fp32, threads=1).preprocessor  # the runtime's, for the file's layout
    calib = calibration_images(dataset, opts.calib_count, pre)
    log.info("INT8: calibrating on %d training images", len(calib))
    quantize_int8(fp32, int8, calib, pre, opts.activations, info.arch)
    del calib
    int8_base = dataclasses.replace(info, name=f"{name}_int8", precision="int8")
    write_metadata(int8, int8_base, key)
    clock.lap("export+int8")
    events().emit("phase", phase="validation")
    metrics = evaluate(Classifier(fp32, threads=threads), Classifier(int8, threads=threads),
                       dataset, trained.trained_logits)
    agreement = metrics.pop("agreement")
    metrics["warnings"] = warnings + metrics.pop("extra_warnings")
    metrics["learning_curve"] = trained.curve
    add_verdict(metrics)
    clock.lap("validation")
    metrics["training"] = {**trained.training, "seconds": clock.total(), "stages_s": clock.text()}
    fp32_info = dataclasses.replace(info, dataset={**dataset.summary(), **origin.summary()}, metrics=metrics)
    int8_info = dataclasses.replace(fp32_info, name=f"{name}_int8", precision="int8", agreement=agreement)
    write_metadata(fp32, fp32_info, key)
    write_metadata(int8, int8_info, key)
    return _publish(name, tmp, out_dir, fp32, int8, int8_info, origin, opts.force)


def _publish(name: str, tmp: Path, out_dir: Path, fp32: Path, int8: Path, info: ModelInfo,
             origin: Origin, force: bool) -> TrainResult:
    """The confusion PNG and the report; then every file moves into ``out_dir``."""
    from edgecam.training.plot import write_confusion_png

    metrics = info.metrics
    png = tmp / f"{name}_confusion.png"
    title = (f"{name}: INT8 on {metrics['val_images']} validation images, "
             f"accuracy {metrics['accuracy']['int8']:.1%}")
    write_confusion_png(np.array(metrics["confusion"]), info.labels, title, png)
    finals = dict(zip(("int8", "fp32", "png", "report"), output_files(out_dir, name)))
    files = [(finals["int8"], "(the daemon runs this one)"), (finals["fp32"], ""),
             (finals["png"], "(confusion matrix)"), (finals["report"], "")]
    check_owner(out_dir, name, origin, force)  # another run may have written them meanwhile
    with shielded():  # a SIGTERM from here on is too late: never half the files replaced
        for src, dst in ((int8, finals["int8"]), (fp32, finals["fp32"]), (png, finals["png"])):
            os.replace(src, dst)  # atomic: a watcher never sees half a model
        report = format_report(info, files, finals["int8"], origin.camera, origin.region)
        tmp_report = tmp / finals["report"].name
        tmp_report.write_text(report + "\n", encoding="utf-8")
        os.replace(tmp_report, finals["report"])
    log.info("wrote %s", ", ".join(str(p) for p, _ in files))
    events().emit("done", name=name, int8=finals["int8"], fp32=finals["fp32"], png=finals["png"],
                  report=finals["report"], accuracy=metrics["accuracy"], val_images=metrics["val_images"],
                  verdict=metrics.get("verdict", {}), warnings=metrics["warnings"],
                  seconds=metrics["training"]["seconds"])
    return TrainResult(finals["fp32"], finals["int8"], finals["png"], finals["report"],
                       info, report, float(metrics["training"]["seconds"]))
