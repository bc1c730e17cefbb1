"""Model files, loaded once each: regions naming the same file share one session.

``ModelLoader.load`` opens and warms a file off the inference thread; the loaded
models live in the running ``Layout`` (``layout.models``), keyed by the file's
resolved path, so "models/x.onnx" and "./models/x.onnx" are one session. The
inference thread looks each region's model up there every turn, so a swap (a
reload, an upload) lands between two frames.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from edgecam.errors import ModelError
from edgecam.model.classifier import Classifier

log = logging.getLogger(__name__)


def model_key(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().resolve())


def file_stamp(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(mtime_ns, size) of the file, or (-1, -1) when it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return (-1, -1)
    return info.st_mtime_ns, info.st_size


@dataclass(frozen=True)
class LoadedModel:
    classifier: Classifier
    stamp: tuple[int, int]  # the file's (mtime_ns, size) when it was loaded

    def changed_on_disk(self) -> bool:
        """True when the file is not the one that was loaded (replaced, rewritten, gone)."""
        return file_stamp(self.classifier.path) != self.stamp


class ModelLoader:
    """Loads model files for the daemon: every session gets the same thread count and kernels."""

    def __init__(self, threads: int, open_classifier: Callable[[str, int], Classifier] = Classifier) -> None:
        self.threads = threads
        self._open = open_classifier

    def load(self, path: str, where: str) -> LoadedModel:
        """Open and warm ``path``. ``where`` (a config key path such as
        ``cameras.garage.regions.door.model``) prefixes any ModelError."""
        stamp = file_stamp(path)
        try:
            classifier = self._open(path, self.threads)
        except ModelError as err:
            raise ModelError(f"{where}: {err}") from None
        return LoadedModel(classifier, stamp)

    def load_missing(self, wanted: Mapping[str, str], loaded: Mapping[str, LoadedModel]) -> dict[str, LoadedModel]:
        """Every model of ``wanted`` (path -> config key that names it) not in ``loaded`` or
        changed on disk since: loaded now. Raises the first ModelError."""
        fresh: dict[str, LoadedModel] = {}
        for path, where in wanted.items():
            key = model_key(path)
            if key in fresh:
                continue
            current = loaded.get(key)
            if current is not None and not current.changed_on_disk():
                continue
            fresh[key] = self.load(path, where)
        return fresh
