"""The training recipe shared by both head trainers (numpy: ``head.py``; torch: ``fit.py``).

After MediaPipe Model Maker and the PyTorch transfer-learning tutorial: AdamW,
label smoothing 0.1, dropout on the features, class-weighted loss (imbalanced
folders), early stopping on validation with the best weights restored. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABEL_SMOOTHING = 0.1
DROPOUT = 0.2
WEIGHT_DECAY = 1e-4
ADAM_BETAS = (0.9, 0.999)  # torch.optim.AdamW's defaults
ADAM_EPS = 1e-8


@dataclass
class HeadSettings:
    max_epochs: int = 100
    patience: int = 15
    lr: float = 1e-3
    batch: int = 64


@dataclass
class TailSettings:
    max_epochs: int = 12
    patience: int = 3
    lr_tail: float = 1e-4
    lr_head: float = 3e-4
    batch: int = 16


@dataclass
class FitResult:
    epochs: int  # run
    best_epoch: int  # whose weights were kept (1-based)
    val_loss: float
    val_accuracy: float

    def as_dict(self) -> dict:
        return {"epochs": self.epochs, "best_epoch": self.best_epoch,
                "val_loss": round(self.val_loss, 4), "val_accuracy": round(self.val_accuracy, 4)}


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """N / (C * n_c): every class weighs the same in the loss, whatever its image count."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float32)
    return np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0).astype(np.float32)


class Best:
    """Which epoch is best so far, and when ``patience`` epochs brought no improvement.

    Best means the highest validation accuracy, then the lowest validation loss.
    On a small validation set the loss alone flattens early (label smoothing and
    weight decay bound the confidence) and its noise can pick an epoch that
    still gets images wrong; accuracy is what the user is shown. The caller keeps
    the weights of the epochs for which ``step`` says ``improved``.
    """

    MIN_DELTA = 1e-4  # a smaller drop in loss is not an improvement

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.loss, self.accuracy, self.epoch = float("inf"), -1.0, 0

    def step(self, epoch: int, loss: float, acc: float) -> tuple[bool, bool]:
        """(improved, stop)."""
        better_acc = acc > self.accuracy + 1e-9
        same_acc = abs(acc - self.accuracy) <= 1e-9
        improved = better_acc or (same_acc and loss < self.loss - self.MIN_DELTA)
        if improved:
            self.loss, self.accuracy, self.epoch = loss, acc, epoch
        return improved, epoch - self.epoch >= self.patience
