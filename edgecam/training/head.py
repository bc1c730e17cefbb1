"""The linear head in numpy: softmax regression on cached pooled features, no torch.

The same recipe as the torch trainer (``fit.train_head``, ``recipe.py``): a
Linear layer initialised like ``torch.nn.Linear`` (uniform in +-1/sqrt(F)),
AdamW (torch's update, weight decay on weight and bias alike), dropout on the
features, cross-entropy weighted by class with label smoothing (torch's
formula, normalised by the summed weights of the batch), early stopping on
validation accuracy then loss with the best weights kept. Only the random
streams differ from torch's, so the two reach the same accuracy, not the same
weights (tests/test_train_units.py compares them on real features).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecam.training.progress import Progress, epoch_done, stopped_early
from edgecam.training.recipe import (
    ADAM_BETAS,
    ADAM_EPS,
    DROPOUT,
    LABEL_SMOOTHING,
    WEIGHT_DECAY,
    Best,
    FitResult,
    HeadSettings,
    class_weights,
)


@dataclass
class LinearHead:
    """logits = x @ weight.T + bias, as a Gemm with transB=1 computes them."""

    weight: np.ndarray  # (C, F) float32
    bias: np.ndarray  # (C,) float32

    def logits(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float32) @ self.weight.T + self.bias).astype(np.float32)

    def copy(self) -> LinearHead:
        return LinearHead(self.weight.copy(), self.bias.copy())


def new_head(features: int, classes: int, rng: np.random.Generator) -> LinearHead:
    """torch.nn.Linear's initialisation: weight and bias uniform in +-1/sqrt(features)."""
    bound = 1.0 / np.sqrt(features)
    return LinearHead(rng.uniform(-bound, bound, (classes, features)).astype(np.float32),
                      rng.uniform(-bound, bound, classes).astype(np.float32))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def weighted_loss(logits: np.ndarray, y: np.ndarray, weight: np.ndarray, smoothing: float = 0.0) -> float:
    """torch's ``cross_entropy(logits, y, weight=weight, label_smoothing=smoothing)`` (mean)."""
    logp = log_softmax(logits.astype(np.float64))
    w_y = weight[y].astype(np.float64)
    total = w_y.sum()
    nll = -(w_y * logp[np.arange(len(y)), y]).sum() / total
    smooth = -(logp * weight[None, :]).sum() / total
    return float((1.0 - smoothing) * nll + smoothing / logits.shape[1] * smooth)


def loss_gradient(logits: np.ndarray, y: np.ndarray, weight: np.ndarray, smoothing: float) -> np.ndarray:
    """d weighted_loss / d logits, (N, C)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    w_y = weight[y]
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(y)), y] = 1.0
    classes = logits.shape[1]
    grad = (1.0 - smoothing) * w_y[:, None] * (probs - onehot)
    grad += (smoothing / classes) * (weight.sum() * probs - weight[None, :])
    return (grad / w_y.sum()).astype(np.float32)


class AdamW:
    """torch.optim.AdamW's update for a list of float32 arrays, in place."""

    def __init__(self, params: list[np.ndarray], lr: float, weight_decay: float) -> None:
        self.params, self.lr, self.weight_decay = params, lr, weight_decay
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.steps = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.steps += 1
        beta1, beta2 = ADAM_BETAS
        correction1 = 1.0 - beta1**self.steps
        correction2 = 1.0 - beta2**self.steps
        for param, grad, m, v in zip(self.params, grads, self.m, self.v):
            param *= 1.0 - self.lr * self.weight_decay
            m *= beta1
            m += (1.0 - beta1) * grad
            v *= beta2
            v += (1.0 - beta2) * grad * grad
            denom = np.sqrt(v / correction2) + ADAM_EPS
            param -= (self.lr / correction1) * m / denom


def evaluate(head: LinearHead, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Validation (loss, accuracy): weighted cross-entropy without smoothing, as fit.py's."""
    logits = head.logits(x)
    return weighted_loss(logits, y, weight), float((logits.argmax(1) == y).mean())


def train_head(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
               num_classes: int, seed: int, settings: HeadSettings | None = None,
               label: str = "head") -> tuple[LinearHead, FitResult]:
    """A new head trained on pooled features (rows), with the best epoch's weights."""
    settings = settings or HeadSettings()
    rng = np.random.default_rng(seed)
    x_train = np.ascontiguousarray(x_train, np.float32)
    y_train, y_val = y_train.astype(np.int64), y_val.astype(np.int64)
    head = new_head(x_train.shape[1], num_classes, rng)
    weight = class_weights(y_train, num_classes)
    optimizer = AdamW([head.weight, head.bias], settings.lr, WEIGHT_DECAY)
    best, kept = Best(settings.patience), head.copy()
    keep = 1.0 - DROPOUT
    epoch = 0
    with Progress(settings.max_epochs, label) as bar:
        for epoch in range(1, settings.max_epochs + 1):
            order = rng.permutation(len(x_train))
            for start in range(0, len(order), settings.batch):
                idx = order[start : start + settings.batch]
                x = x_train[idx] * ((rng.random((len(idx), x_train.shape[1])) < keep) / np.float32(keep))
                x = x.astype(np.float32)
                grad = loss_gradient(head.logits(x), y_train[idx], weight, LABEL_SMOOTHING)
                optimizer.step([grad.T @ x, grad.sum(axis=0)])
            val_loss, val_acc = evaluate(head, x_val, y_val, weight)
            improved, stop = best.step(epoch, val_loss, val_acc)
            if improved:
                kept = head.copy()
            epoch_done(bar, label, epoch, settings.max_epochs, val_loss, val_acc)
            if stop:
                if epoch < settings.max_epochs:
                    stopped_early(bar, label, epoch, best.epoch, settings.max_epochs)
                break
    return kept, FitResult(epoch, best.epoch, best.loss, best.accuracy)
