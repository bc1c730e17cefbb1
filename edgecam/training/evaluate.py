"""Export checks, INT8 calibration on training images, validation metrics, the written outputs."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np

from edgecam.errors import ModelBuildError
from edgecam.export.calibration import Named
from edgecam.model.classifier import Classifier
from edgecam.model.preprocess import Preprocessor
from edgecam.model.types import ModelInfo
from edgecam.training.dataset import Dataset, stratified_subset
from edgecam.training.features import reduced
from edgecam.training.metrics import (
    CURVE_FRACTIONS,
    accuracy,
    confusion_matrix,
    per_class,
    verdict,
)

log = logging.getLogger(__name__)

CHUNK = 16  # validation images per batch run
EXPORT_TOLERANCE = 1e-2  # max |ONNX FP32 - trained network| logit difference on validation images
MIN_AGREEMENT = 0.95


def learning_curve_indices(dataset: Dataset, seed: int) -> list[tuple[float, np.ndarray]]:
    """Stratified training subsets at 25 / 50 / 100 %."""
    return [(f, np.array(stratified_subset(dataset.train, f, seed), np.int64)) for f in CURVE_FRACTIONS]


def calibration_images(dataset: Dataset, count: int, pre: Preprocessor) -> list[Named]:
    """Up to ``count`` training images, taken from every class in turn (what the camera sees).

    Large ones are kept shrunk (``features.reduced``): all of them are in memory at once.
    """
    by_class: dict[int, list] = {}
    for sample in dataset.train:
        by_class.setdefault(sample.label, []).append(sample)
    order = [s for group in itertools.zip_longest(*by_class.values()) for s in group if s is not None]
    return [(sample.path.name, reduced(dataset.read(sample), pre.size)) for sample in order[:count]]


def evaluate(fp32: Classifier, int8: Classifier, dataset: Dataset, trained_logits: np.ndarray) -> dict:
    """Validation metrics of the exported files, as the runtime runs them.

    ``trained_logits`` are what the trained network answered on the validation
    images: the FP32 file must answer the same (the export check).
    """
    truth = np.array([s.label for s in dataset.val], np.int64)
    logits_fp32, logits_int8 = [], []
    for start in range(0, len(dataset.val), CHUNK):
        images = [dataset.read(s) for s in dataset.val[start : start + CHUNK]]
        logits_fp32.append(fp32.logits_batch(images))
        logits_int8.append(int8.logits_batch(images))
    lf, li = np.concatenate(logits_fp32), np.concatenate(logits_int8)
    drift = float(np.abs(lf - trained_logits).max())
    log.info("export check: ONNX FP32 vs the trained network, max logit difference %.2e on %d images",
             drift, len(lf))
    if drift > EXPORT_TOLERANCE:
        raise ModelBuildError(
            f"the exported FP32 model disagrees with the trained network (max logit difference "
            f"{drift:.3g} on validation images): not writing a model that answers differently"
        )
    pred_fp32, pred_int8 = lf.argmax(1), li.argmax(1)
    top5 = np.argsort(-li, axis=1)[:, : min(5, li.shape[1])]
    labels = dataset.labels
    matrix = confusion_matrix(truth.tolist(), pred_int8.tolist(), len(labels))
    agreement = {
        "images": len(truth),
        "top1": round(float((pred_fp32 == pred_int8).mean()), 4),
        "top5": round(float((top5 == pred_fp32[:, None]).any(1).mean()), 4),
    }
    warnings = []
    if agreement["top1"] < MIN_AGREEMENT:
        warnings.append(
            f"INT8 agrees with FP32 on only {agreement['top1']:.1%} of validation images: "
            "compare their accuracies above; the FP32 file is the fallback"
        )
    return {
        "val_images": len(truth),
        "accuracy": {
            "fp32": round(accuracy(confusion_matrix(truth.tolist(), pred_fp32.tolist(), len(labels))), 4),
            "int8": round(accuracy(matrix), 4),
        },
        "per_class": per_class(matrix, labels),
        "confusion": matrix.tolist(),
        "export_check_max_logit_diff": float(f"{drift:.3g}"),
        "agreement": agreement,
        "extra_warnings": warnings,
    }


def add_verdict(metrics: dict) -> dict:
    metrics["verdict"] = verdict(metrics.get("learning_curve") or [], int(metrics["val_images"]))
    return metrics


def format_report(info: ModelInfo, files: list[tuple[Path, str]], int8: Path,
                  camera: str | None = None, region: str | None = None) -> str:
    """The model's description, its files, and how to put it to work."""
    from edgecam.model.describe import describe

    lines = [describe(info), "files:"]
    for path, note in files:
        size = f"  {path.stat().st_size / 1e6:.1f} MB" if path.suffix == ".onnx" else ""
        lines.append(f"  {path}{size}{('  ' + note) if note else ''}")
    return "\n".join(lines + deploy_lines(int8, camera, region))


def deploy_lines(int8: Path, camera: str | None, region: str | None) -> list[str]:
    """The three ways to deploy (docs/deploying.md), for this file and region."""
    cam, reg = camera or "<camera>", region or "<region>"
    path = int8.resolve()
    return [
        f"deploy {int8.name} (no restart needed):",
        f"  config: set cameras.{cam}.regions.{reg}.model: {path} in config.yaml,",
        "          then `systemctl reload edgecam` (or MQTT {\"cmd\": \"reload\"}) loads it",
        f"  web:    upload it for {cam}/{reg} on the web app (POST /api/model?camera={cam}&region={reg},",
        "          needs preview.http.auth); it is checked and the old model keeps running if it fails",
        f"  try it: edgecam classify --model {path} IMAGE...",
    ]
