"""Every model file the daemon uses, loaded once: regions naming the same file share it.

The inference thread looks a region's classifier up here each turn, so
``replace`` (a retrained model, a reload) takes effect between two frames:
swapping one dict entry is atomic, and the old session finishes the batch it
is running. Paths are compared resolved, so "models/x.onnx" and "./models/x.onnx"
are one session.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from edgecam.errors import ModelError
from edgecam.model.classifier import Classifier

log = logging.getLogger(__name__)


def model_key(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().resolve())


class ModelPool:
    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._models: dict[str, Classifier] = {}
        self._stamps: dict[str, tuple[int, int]] = {}  # file (mtime_ns, size) when loaded
        self._lock = threading.Lock()  # loads and swaps (MQTT, HTTP, SIGHUP threads)

    def load(self, path: str, where: str) -> Classifier:
        """The classifier for ``path``, loading it on first use. ``where`` (a config key
        path such as ``cameras.garage.regions.door.model``) prefixes any ModelError."""
        key = model_key(path)
        with self._lock:
            if key in self._models:
                return self._models[key]
            try:
                classifier = Classifier(path, threads=self.threads)
            except ModelError as err:
                raise ModelError(f"{where}: {err}") from None
            self._models[key] = classifier
            self._stamps[key] = _stamp(key)
            return classifier

    def get(self, path: str) -> Classifier:
        return self._models[model_key(path)]

    def replace(self, path: str, classifier: Classifier) -> Classifier:
        """Swap in ``classifier`` for ``path``; returns the old one."""
        key = model_key(path)
        with self._lock:
            old = self._models[key]
            self._models[key] = classifier
            self._stamps[key] = _stamp(key)
        return old

    def adopt(self, path: str, classifier: Classifier) -> None:
        """Add an already loaded classifier under ``path`` (a model uploaded for one region)."""
        key = model_key(path)
        with self._lock:
            self._models[key] = classifier
            self._stamps[key] = _stamp(key)

    def changed_on_disk(self, path: str) -> bool:
        """True when the file is not the one that was loaded (replaced, rewritten, gone)."""
        key = model_key(path)
        return _stamp(key) != self._stamps.get(key)

    def paths(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def items(self) -> list[tuple[str, Classifier]]:
        with self._lock:
            return list(self._models.items())


def _stamp(path: str) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (-1, -1)
    return info.st_mtime_ns, info.st_size
