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
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from edgecam.config import ModelChecksConfig, ModelConfig
from edgecam.errors import ModelError
from edgecam.inference.vet import ModelChecker, stand_in_frames
from edgecam.model import cpu
from edgecam.model.classifier import Classifier
from edgecam.model.cpu import Int8Kernels

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
    """Loads model files for the daemon: each new file is checked first (``vet``), in a
    process of its own; every session gets the same thread count and limits."""

    def __init__(self, threads: int, checks: ModelChecksConfig, checker: Optional[ModelChecker] = None,
                 open_classifier: Callable[..., Classifier] = Classifier,
                 kernels: Optional[Int8Kernels] = None) -> None:
        self.threads = threads
        self.checks = checks
        self.kernels = kernels if kernels is not None else cpu.auto()
        self._checker = checker if checker is not None else ModelChecker(checks, threads, self.kernels.exact)
        self._open = open_classifier

    @classmethod
    def for_config(cls, model: ModelConfig) -> ModelLoader:
        return cls(model.threads, model.checks, kernels=cpu.choose(model.exact_int8))

    def settings(self) -> tuple[int, ModelChecksConfig, str]:
        """What every session depends on: a change means loading every model again."""
        return self.threads, self.checks, self.kernels.mode

    def load(self, path: str, where: str, crops: Optional[Sequence[np.ndarray]] = None) -> LoadedModel:
        """Check, then open and warm ``path``. ``crops``: recent real crops of the regions that
        will run it (without them, stand-in frames, and the verdict is remembered).
        ``where`` (a config key path such as ``cameras.garage.regions.door.model``) prefixes
        any ModelError."""
        stamp = file_stamp(path)
        if not Path(path).is_file():  # the classifier's own message names the build command
            return self._open_checked(path, where, stamp)
        live = crops is not None and len(crops) > 0
        frames = list(crops) if crops is not None and live else stand_in_frames()
        verdict = self._checker.check(path, frames, remember=not live)
        if not verdict.ok:
            raise ModelError(f"{where}: {Path(path).name} refused: {verdict.reason}")
        log.info("model %s checked on %s: slowest image %.0f ms, %.0f MB", Path(path).name,
                 "live crops" if live else "stand-in frames", verdict.run_ms, verdict.grew_mb)
        return self._open_checked(path, where, stamp)

    def _open_checked(self, path: str, where: str, stamp: tuple[int, int]) -> LoadedModel:
        try:
            classifier = self._open(path, threads=self.threads, max_input_size=self.checks.max_input_size,
                                    exact_int8=self.kernels.exact)
        except ModelError as err:
            raise ModelError(f"{where}: {err}") from None
        return LoadedModel(classifier, stamp)

    def load_missing(self, wanted: Mapping[str, str], loaded: Mapping[str, LoadedModel],
                     crops: Callable[[str], list[np.ndarray]] = lambda path: []) -> dict[str, LoadedModel]:
        """Every model of ``wanted`` (path -> config key that names it) not in ``loaded`` or
        changed on disk since: checked and loaded now (``crops(path)``: live crops for it).
        Raises the first ModelError."""
        fresh: dict[str, LoadedModel] = {}
        for path, where in wanted.items():
            key = model_key(path)
            if key in fresh:
                continue
            current = loaded.get(key)
            if current is not None and not current.changed_on_disk():
                continue
            fresh[key] = self.load(path, where, crops(path))
        return fresh
