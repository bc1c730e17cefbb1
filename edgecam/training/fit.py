"""Training loops on cached tensors: the head on pooled features, then optionally the tail.

Imported lazily (imports torch). Recipe, after MediaPipe Model Maker and the
PyTorch transfer-learning tutorial: AdamW, label smoothing 0.1, dropout on the
features, class-weighted loss (imbalanced folders), early stopping on the
validation loss with the best weights restored. The network stays in eval
mode throughout: BatchNorm keeps its ImageNet statistics (a few dozen images
per class cannot estimate better ones), and its scale and shift still train
in the tail. No autocast/AMP: float32 on CPU and GPU alike.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgecam.training.progress import Progress

LABEL_SMOOTHING = 0.1
DROPOUT = 0.2
WEIGHT_DECAY = 1e-4


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


class _Early:
    """Keeps the best state; says when ``patience`` epochs brought no improvement.

    Best means the highest validation accuracy, then the lowest validation loss.
    On a small validation set the loss alone flattens early (label smoothing and
    weight decay bound the confidence) and its noise can pick an epoch that
    still gets images wrong; accuracy is what the user is shown.
    """

    MIN_DELTA = 1e-4  # a smaller drop in loss is not an improvement

    def __init__(self, patience: int, modules: list[torch.nn.Module]) -> None:
        self.patience, self.modules = patience, modules
        self.best_loss, self.best_acc, self.best_epoch = float("inf"), -1.0, 0
        self.best_state = [copy.deepcopy(m.state_dict()) for m in modules]

    def step(self, epoch: int, loss: float, acc: float) -> bool:
        better_acc = acc > self.best_acc + 1e-9
        same_acc = abs(acc - self.best_acc) <= 1e-9
        if better_acc or (same_acc and loss < self.best_loss - self.MIN_DELTA):
            self.best_loss, self.best_acc, self.best_epoch = loss, acc, epoch
            self.best_state = [copy.deepcopy(m.state_dict()) for m in self.modules]
        return epoch - self.best_epoch >= self.patience

    def restore(self) -> None:
        for module, state in zip(self.modules, self.best_state):
            module.load_state_dict(state)


def _evaluate(logits_of: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, y: torch.Tensor,
              weight: torch.Tensor, device: str, batch: int = 256) -> tuple[float, float]:
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + batch], np.float32))
            outs.append(logits_of(chunk.to(device)))
    logits = torch.cat(outs)
    loss = F.cross_entropy(logits, y, weight=weight).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def train_head(head: torch.nn.Linear, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
               y_val: np.ndarray, device: str, seed: int, settings: HeadSettings | None = None,
               label: str = "head") -> FitResult:
    """Train ``head`` (reset first) on pooled features; keeps the best epoch's weights."""
    settings = settings or HeadSettings()
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)  # ops this small only lose time in thread hand-offs
    try:
        return _train_head(head, x_train, y_train, x_val, y_val, device, seed, settings, label)
    finally:
        torch.set_num_threads(threads)


def _train_head(head: torch.nn.Linear, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray, device: str, seed: int, settings: HeadSettings, label: str) -> FitResult:
    torch.manual_seed(seed)
    head.reset_parameters()
    head.to(device).train()
    for param in head.parameters():
        param.requires_grad_(True)
    num_classes = head.out_features
    weight = torch.from_numpy(class_weights(y_train, num_classes)).to(device)
    features = torch.from_numpy(np.ascontiguousarray(x_train, np.float32)).to(device)
    targets = torch.from_numpy(y_train.astype(np.int64)).to(device)
    val_y = torch.from_numpy(y_val.astype(np.int64)).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=WEIGHT_DECAY)
    early = _Early(settings.patience, [head])
    generator = torch.Generator().manual_seed(seed)
    epoch = 0
    with Progress(settings.max_epochs, label) as bar:
        for epoch in range(1, settings.max_epochs + 1):
            order = torch.randperm(len(features), generator=generator).to(device)
            for start in range(0, len(order), settings.batch):
                idx = order[start : start + settings.batch]
                logits = head(F.dropout(features[idx], DROPOUT, training=True))
                loss = F.cross_entropy(logits, targets[idx], weight=weight, label_smoothing=LABEL_SMOOTHING)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            val_loss, val_acc = _evaluate(head, x_val, val_y, weight, device)
            stop = early.step(epoch, val_loss, val_acc)
            bar.update(1, note=f"val loss {val_loss:.3f} acc {val_acc:.1%}")
            if stop:
                break
    early.restore()
    head.eval()
    return FitResult(epoch, early.best_epoch, early.best_loss, early.best_acc)


def train_tail(tail: torch.nn.Module, head: torch.nn.Linear, trunk_train: np.ndarray,
               y_train: np.ndarray, trunk_val: np.ndarray, y_val: np.ndarray, device: str,
               seed: int, settings: TailSettings | None = None) -> FitResult:
    """Fine-tune ``tail`` + ``head`` on cached trunk outputs (N, V, ...): one random view
    of each image per epoch. Both stay in eval mode (frozen BatchNorm statistics)."""
    settings = settings or TailSettings()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tail.to(device).eval()
    head.to(device).eval()
    params = [{"params": list(tail.parameters()), "lr": settings.lr_tail},
              {"params": list(head.parameters()), "lr": settings.lr_head}]
    for group in params:
        for param in group["params"]:
            param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, weight_decay=WEIGHT_DECAY)
    weight = torch.from_numpy(class_weights(y_train, head.out_features)).to(device)
    targets = torch.from_numpy(y_train.astype(np.int64))
    val_y = torch.from_numpy(y_val.astype(np.int64)).to(device)

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        return head(tail(x))

    early = _Early(settings.patience, [tail, head])
    early.step(0, *_evaluate(logits_of, trunk_val, val_y, weight, device, batch=64))  # head-only start
    steps = -(-len(trunk_train) // settings.batch)
    epoch = 0
    with Progress(settings.max_epochs * steps, "fine-tune") as bar:
        for epoch in range(1, settings.max_epochs + 1):
            order = rng.permutation(len(trunk_train))
            chosen = rng.integers(0, trunk_train.shape[1], size=len(order))
            for start in range(0, len(order), settings.batch):
                idx = order[start : start + settings.batch]
                x = torch.from_numpy(trunk_train[idx, chosen[start : start + len(idx)]].astype(np.float32))
                pooled = tail(x.to(device))
                logits = head(F.dropout(pooled, DROPOUT, training=True))
                loss = F.cross_entropy(logits, targets[idx].to(device), weight=weight,
                                       label_smoothing=LABEL_SMOOTHING)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.update(1, note=f"epoch {epoch}")
            val_loss, val_acc = _evaluate(logits_of, trunk_val, val_y, weight, device, batch=64)
            bar.note = f"epoch {epoch} val loss {val_loss:.3f} acc {val_acc:.1%}"
            if early.step(epoch, val_loss, val_acc):
                bar.update(bar.total - bar.done)
                break
    early.restore()
    for param in [*tail.parameters(), *head.parameters()]:
        param.requires_grad_(False)
    return FitResult(epoch, early.best_epoch, early.best_loss, early.best_acc)
