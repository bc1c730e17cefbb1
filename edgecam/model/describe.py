"""What a model file says about itself, for people (``edgecam model info``, the training report).

numpy-free and torch-free: ``edgecam model info`` runs on the device too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from edgecam.model.types import ModelInfo

MAX_LABELS_SHOWN = 20


def info_dict(info: ModelInfo) -> dict[str, Any]:
    """``info`` as plain JSON-able data (labels as a list)."""
    data = dataclasses.asdict(info)
    data["labels"] = list(info.labels)
    data["num_classes"] = info.num_classes
    return data


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1%}"


def format_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], indent: str = "  ") -> str:
    """Rows: true class; columns: predicted class; as an aligned text table."""
    width = max([len(str(v)) for row in matrix for v in row] + [len(label) for label in labels] + [4])
    head = indent + " " * (width + 2) + "  ".join(f"{label:>{width}}" for label in labels)
    rows = [
        indent + f"{label:<{width}}  " + "  ".join(f"{int(v):>{width}}" for v in row)
        for label, row in zip(labels, matrix)
    ]
    return "\n".join([head, *rows])


def _labels_line(labels: Sequence[str]) -> str:
    shown = ", ".join(labels[:MAX_LABELS_SHOWN])
    more = len(labels) - MAX_LABELS_SHOWN
    return shown + (f", ... ({more} more)" if more > 0 else "")


def describe(info: ModelInfo, extra: dict[str, Any] | None = None) -> str:
    """Every field of ``info`` in plain lines; ``extra`` (file, bytes...) comes first."""
    lines = [f"{key}: {value}" for key, value in (extra or {}).items()]
    lines += [
        f"name: {info.name}",
        f"arch: {info.arch}, {info.precision}, input {info.input_size}x{info.input_size} "
        f"{info.color_order}, layout {info.layout}",
        f"normalization: mean {[round(v, 4) for v in info.mean]}, std {[round(v, 4) for v in info.std]}",
        f"weights: {info.weights}" + ("" if info.trained else " (untrained: labels are meaningless)"),
        f"labels ({info.num_classes}): {_labels_line(info.labels)}",
    ]
    agree = info.agreement
    if agree.get("images"):
        lines.append(f"INT8 vs FP32 on {agree['images']} images: top-1 agreement {_pct(agree.get('top1'))}, "
                     f"top-5 containment {_pct(agree.get('top5'))}")
    if info.dataset:
        lines += _dataset_lines(info.dataset)
    if info.metrics:
        lines += metrics_lines(info.metrics, info.labels)
    return "\n".join(lines)


def _dataset_lines(data: dict) -> list[str]:
    lines = [f"dataset: {data.get('name', '?')}, {data.get('images', '?')} images, "
             f"fingerprint {data.get('fingerprint', '?')}",
             f"  split: {data.get('split', '?')}"]
    classes = data.get("classes") or {}
    if classes:
        width = max(len(label) for label in classes)
        lines.append(f"  {'class':<{width}}  train    val")
        lines += [f"  {label:<{width}}  {c.get('train', 0):>5}  {c.get('val', 0):>5}"
                  for label, c in classes.items()]
    if data.get("skipped_unreadable"):
        lines.append(f"  {data['skipped_unreadable']} files were left out (unreadable, or over the size limits)")
    return lines


def metrics_lines(metrics: dict, labels: Sequence[str]) -> list[str]:
    """The validation results, learning curve, verdict and warnings."""
    lines = []
    acc = metrics.get("accuracy") or {}
    if acc:
        lines.append(f"validation ({metrics.get('val_images', '?')} images): accuracy FP32 "
                     f"{_pct(acc.get('fp32'))}, INT8 {_pct(acc.get('int8'))}")
    per_class = metrics.get("per_class") or {}
    if per_class:
        width = max(len(label) for label in per_class)
        lines.append(f"  {'class':<{width}}  precision  recall  images   (INT8)")
        lines += [f"  {label:<{width}}  {_pct(c.get('precision')):>9}  {_pct(c.get('recall')):>6}  "
                  f"{c.get('support', 0):>6}" for label, c in per_class.items()]
    if metrics.get("confusion"):
        lines.append("  confusion matrix, INT8 (rows: true class, columns: predicted):")
        lines.append(format_confusion(metrics["confusion"], labels, indent="    "))
    curve = metrics.get("learning_curve") or []
    if curve:
        points = ", ".join(f"{p['fraction']:.0%} ({p['images']} images) {_pct(p['accuracy'])}" for p in curve)
        lines.append(f"learning curve (head only, validation accuracy): {points}")
    verdict = metrics.get("verdict") or {}
    if verdict.get("text"):
        lines.append(f"enough data? {verdict['text']}")
    warnings = metrics.get("warnings") or []
    lines += [f"warning: {text}" for text in warnings]
    training = metrics.get("training") or {}
    if training:
        lines.append("training: " + ", ".join(f"{key} {value}" for key, value in training.items()))
    return lines
