"""torch training loops on cached tensors: the head on pooled features, then optionally the tail.

Imported lazily (imports torch); used by ``--finetune`` and GPU training (head-only
training on the CPU uses the numpy trainer, ``head.py``). The recipe is
``recipe.py``'s. The network stays in eval mode throughout: BatchNorm keeps its
ImageNet statistics (a few dozen images per class cannot estimate better ones),
and its scale and shift still train in the tail. No autocast/AMP: float32 on CPU
and GPU alike.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from edgecam.training.progress import Progress, epoch_done, stopped_early
from edgecam.training.recipe import (
    DROPOUT,
    LABEL_SMOOTHING,
    WEIGHT_DECAY,
    Best,
    FitResult,
    HeadSettings,
    TailSettings,
    class_weights,
)


class _Early:
    """``recipe.Best``, keeping a copy of the modules' weights at the best epoch."""

    def __init__(self, patience: int, modules: list[torch.nn.Module]) -> None:
        self.best, self.modules = Best(patience), modules
        self.best_state = [copy.deepcopy(m.state_dict()) for m in modules]

    def step(self, epoch: int, loss: float, acc: float) -> bool:
        improved, stop = self.best.step(epoch, loss, acc)
        if improved:
            self.best_state = [copy.deepcopy(m.state_dict()) for m in self.modules]
        return stop

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
            epoch_done(bar, label, epoch, settings.max_epochs, val_loss, val_acc)
            if stop:
                if epoch < settings.max_epochs:
                    stopped_early(bar, label, epoch, early.best.epoch, settings.max_epochs)
                break
    early.restore()
    head.eval()
    return FitResult(epoch, early.best.epoch, early.best.loss, early.best.accuracy)


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
    tail_params, head_params = list(tail.parameters()), list(head.parameters())
    for param in (*tail_params, *head_params):
        param.requires_grad_(True)
    params = [{"params": tail_params, "lr": settings.lr_tail}, {"params": head_params, "lr": settings.lr_head}]
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
            epoch_done(bar, "fine-tune", epoch, settings.max_epochs, val_loss, val_acc, advance=0)
            bar.note = f"epoch {epoch} val loss {val_loss:.3f} acc {val_acc:.1%}"
            if early.step(epoch, val_loss, val_acc):
                if epoch < settings.max_epochs:
                    stopped_early(bar, "fine-tune", epoch, early.best.epoch, settings.max_epochs)
                break
    early.restore()
    for param in [*tail.parameters(), *head.parameters()]:
        param.requires_grad_(False)
    return FitResult(epoch, early.best.epoch, early.best.loss, early.best.accuracy)
