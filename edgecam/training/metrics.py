"""Validation metrics, data warnings and the "enough data?" verdict (numpy only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

MIN_IMAGES = 20  # per class, below which a warning is printed
MAX_IMBALANCE = 3.0  # largest class / smallest class
CURVE_FRACTIONS = (0.25, 0.5, 1.0)
ENOUGH_ACCURACY = 0.95  # a levelled-off curve at or above this is "enough"


def confusion_matrix(true: Sequence[int], predicted: Sequence[int], num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: rows are the true class, columns the predicted one."""
    true_a, pred_a = np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if true_a.shape != pred_a.shape:
        raise ValueError(f"{true_a.size} true labels but {pred_a.size} predictions")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true_a, pred_a), 1)
    return matrix


def accuracy(matrix: np.ndarray) -> float:
    total = int(matrix.sum())
    return float(np.trace(matrix)) / total if total else 0.0


def per_class(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, dict]:
    """Precision, recall and support per class; None where a class was never predicted/seen."""
    out = {}
    for i, label in enumerate(labels):
        hits, seen, predicted = int(matrix[i, i]), int(matrix[i].sum()), int(matrix[:, i].sum())
        out[label] = {
            "precision": round(hits / predicted, 4) if predicted else None,
            "recall": round(hits / seen, 4) if seen else None,
            "support": seen,
        }
    return out


def data_warnings(counts: Mapping[str, int]) -> list[str]:
    """Classes with fewer than MIN_IMAGES images, and imbalance above MAX_IMBALANCE."""
    warnings = [
        f"class {label!r} has {count} images, fewer than {MIN_IMAGES}: "
        "add more, varied in light, angle and background"
        for label, count in counts.items()
        if count < MIN_IMAGES
    ]
    if counts:
        big = max(counts, key=lambda k: counts[k])
        small = min(counts, key=lambda k: counts[k])
        ratio = counts[big] / max(1, counts[small])
        if ratio > MAX_IMBALANCE:
            warnings.append(
                f"classes are imbalanced: {big!r} has {counts[big]} images, {small!r} has "
                f"{counts[small]} ({ratio:.1f}x); keep the largest within {MAX_IMBALANCE:g}x "
                "the smallest (training weights classes, but the small one is still thin)"
            )
    return warnings


def verdict(curve: Sequence[Mapping], val_images: int) -> dict:
    """A plain answer to "have I got enough data?" from accuracy at 25/50/100 %.

    The rise from half to all of the training set is compared with what one
    validation image is worth (at least 2 points): a rise beyond that means the
    curve still climbs, so more images should help.
    """
    by_fraction = {float(point["fraction"]): float(point["accuracy"]) for point in curve}
    half, full = by_fraction.get(0.5), by_fraction.get(1.0)
    if half is None or full is None or val_images <= 0:
        return {"enough_data": None, "text": "not measured (no learning curve: --no-learning-curve)"}
    step = max(0.02, 1.0 / val_images)
    if full - half > step:
        enough, text = False, (
            f"not yet: validation accuracy rose from {half:.1%} with half the training images "
            f"to {full:.1%} with all of them, so it is still climbing. More images (varied light, "
            "angles, backgrounds) should still help."
        )
    elif full >= ENOUGH_ACCURACY:
        enough, text = True, (
            f"yes: validation accuracy levelled off at {full:.1%} ({half:.1%} with half the "
            "training images). More images of the same kind add little; add new situations "
            "(night, rain, other objects) when the model meets them."
        )
    else:
        enough, text = False, (
            f"more of the same will not help much: accuracy levelled off at {full:.1%} "
            f"({half:.1%} with half the images). Add more varied images, check the labels "
            "(the confusion matrix shows which classes get mixed up), choose a tighter "
            "region, or try --finetune."
        )
    if val_images < 20:
        text += f" Only {val_images} validation images, so each is worth {1 / val_images:.0%}: a rough answer."
    return {"enough_data": enough, "text": text}
