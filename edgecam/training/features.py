"""The feature cache: every view of every image through the frozen backbone, once.

Training views are the image itself and ``views - 1`` augmented copies, each
turned into the model's input by the runtime's Preprocessor. Validation images
are used as they are (one view). With --finetune the trunk's outputs are kept
too (float16 for training views, within ``cache_mb``; float32 for validation).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edgecam.errors import ModelBuildError
from edgecam.model.preprocess import CROP_FRACTION, Preprocessor
from edgecam.training.augment import random_view
from edgecam.training.dataset import Dataset
from edgecam.training.progress import Progress

log = logging.getLogger(__name__)

BATCH = 32  # views per engine run (a GPU wants many; see onnx_trainer.BATCH for the CPU)
Engine = Callable[[np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]


@dataclass
class Cache:
    pooled: np.ndarray  # (N, V, F) float32, training views
    val_pooled: np.ndarray  # (Nv, F) float32
    trunk_train: np.ndarray | None = None  # (N, Vt, C, H, W) float16
    trunk_val: np.ndarray | None = None  # (Nv, C, H, W) float32

    def rows(self, indices: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every view of the images ``indices`` as rows, with their labels."""
        indices = np.asarray(indices)
        views = self.pooled.shape[1]
        x = self.pooled[indices].reshape(len(indices) * views, -1)
        return x, np.repeat(labels[indices], views)


class _Batcher:
    """Collects preprocessed views; runs the engine on ``size`` of them at a time."""

    def __init__(self, engine: Engine, sink: Callable[[list[tuple[int, int]], np.ndarray, np.ndarray | None], None],
                 size: int) -> None:
        self.engine, self.sink, self.size = engine, sink, size
        self.tensors: list[np.ndarray] = []
        self.keys: list[tuple[int, int]] = []

    def add(self, key: tuple[int, int], tensor: np.ndarray) -> None:
        self.keys.append(key)
        self.tensors.append(tensor)
        if len(self.tensors) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.tensors:
            pooled, trunk = self.engine(np.concatenate(self.tensors))
            self.sink(self.keys, pooled, trunk)
            self.tensors, self.keys = [], []


def reduced(image: np.ndarray, size: int) -> np.ndarray:
    """A large image shrunk by a whole factor (INTER_AREA) while its short side stays at
    least twice what the preprocessing resizes it to: random views of a 25 MP photo then
    cost a few MB, not 75 MB each, and the model's input is the same in practice."""
    keep = 2 * int(size / CROP_FRACTION)
    factor = min(image.shape[:2]) // keep
    if factor < 2:
        return image
    height, width = image.shape[:2]
    return cv2.resize(image, (width // factor, height // factor), interpolation=cv2.INTER_AREA)


def _trunk_views(shape: tuple[int, ...], images: int, views: int, cache_mb: int) -> int:
    """How many views per image fit ``cache_mb`` as float16 trunk outputs."""
    per_view = int(np.prod(shape)) * 2
    fit = (cache_mb << 20) // max(1, images * per_view)
    if fit < 1:
        need = images * per_view / 2**20
        raise ModelBuildError(
            f"--finetune caches the trunk's output: {need:.0f} MB for {images} images at one view "
            f"each, over --cache-mb {cache_mb}. Raise --cache-mb, or use a smaller --size"
        )
    if fit < views:
        log.warning("fine-tuning uses %d of %d views per image (--cache-mb %d)", fit, views, cache_mb)
    return int(min(views, fit))


def extract(engine: Engine, dataset: Dataset, pre: Preprocessor, views: int, flip: bool,
            seed: int, cache_mb: int, batch: int = BATCH) -> Cache:
    """Run every training view and validation image through ``engine``; cache_mb 0 = no trunk."""
    rng = np.random.default_rng(seed + 1)
    n_train, n_val = len(dataset.train), len(dataset.val)
    probe_pooled, probe_trunk = engine(pre(dataset.read(dataset.train[0])))
    cache = Cache(np.zeros((n_train, views, probe_pooled.shape[1]), np.float32),
                  np.zeros((n_val, probe_pooled.shape[1]), np.float32))
    keep_trunk = 0
    if cache_mb > 0:
        if probe_trunk is None:
            raise ModelBuildError("internal: the feature engine returns no trunk output")
        shape = probe_trunk.shape[1:]
        keep_trunk = _trunk_views(shape, n_train, views, cache_mb)
        cache.trunk_train = np.zeros((n_train, keep_trunk, *shape), np.float16)
        cache.trunk_val = np.zeros((n_val, *shape), np.float32)

    def train_sink(keys, pooled, trunk) -> None:
        for row, (i, v) in enumerate(keys):
            cache.pooled[i, v] = pooled[row]
            if cache.trunk_train is not None and v < keep_trunk:
                cache.trunk_train[i, v] = trunk[row]

    def val_sink(keys, pooled, trunk) -> None:
        for row, (i, _) in enumerate(keys):
            cache.val_pooled[i] = pooled[row]
            if cache.trunk_val is not None:
                cache.trunk_val[i] = trunk[row]

    with Progress(n_train + n_val, "features") as bar:
        batcher = _Batcher(engine, train_sink, batch)
        for i, sample in enumerate(dataset.train):
            image = reduced(dataset.read(sample), pre.size)
            batcher.add((i, 0), pre(image))  # the image itself, then random views, one at a time
            for v in range(1, views):
                batcher.add((i, v), pre(random_view(image, rng, flip)))
            bar.update(1)
        batcher.flush()
        batcher = _Batcher(engine, val_sink, batch)
        for i, sample in enumerate(dataset.val):
            batcher.add((i, 0), pre(dataset.read(sample)))
            bar.update(1)
        batcher.flush()
    return cache
