"""One named region of one camera: its box, trigger, smoothing and debounced state."""

from __future__ import annotations

from collections import deque
from typing import Any, Optional

import numpy as np

from edgecam.config import Config, RegionConfig
from edgecam.histogram import LatencyWindow
from edgecam.regions.debounce import Debouncer, RegionState
from edgecam.regions.faults import Faults
from edgecam.regions.trigger import Trigger


def resolve(cfg: RegionConfig, config: Config) -> RegionConfig:
    """``cfg`` with the global defaults filled in (model file, top_k, min_score)."""
    return cfg.model_copy(update={
        "model": cfg.model or config.model.path,
        "top_k": cfg.top_k or config.model.top_k,
        "min_score": config.publish.min_score if cfg.min_score is None else cfg.min_score,
    })


def pixel_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """The fractional box in pixels of a width x height frame, at least 1 pixel each way."""
    x1, y1 = int(round(box[0] * width)), int(round(box[1] * height))
    x2, y2 = int(round(box[2] * width)), int(round(box[3] * height))
    x1, y1 = min(x1, width - 1), min(y1, height - 1)
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


class Region:
    """Owned by the inference thread (changes to it are applied there, between two turns:
    edgecam.inference.changes); other threads only read its counters and state."""

    def __init__(self, camera: str, name: str, cfg: RegionConfig, smoothing: int = 1) -> None:
        if cfg.model is None or cfg.top_k is None or cfg.min_score is None:
            raise ValueError("Region needs a resolved RegionConfig (see resolve())")
        self.camera = camera
        self.name = name
        self.cfg = cfg
        self.trigger = Trigger(cfg)
        self.debouncer = Debouncer(cfg.confirm, cfg.min_score)
        self._history: deque[np.ndarray] = deque(maxlen=smoothing)
        self.processed = 0
        self.skipped = 0
        self.changes = 0
        self.latency = LatencyWindow(200)  # capture -> published, ms (added on the publisher thread)
        self.faults = Faults()
        self._model_identity: Optional[int] = None  # the classifier object last used
        self._model_labels: tuple[str, ...] = ()  # ... and its labels

    @property
    def key(self) -> tuple[str, str]:
        return self.camera, self.name

    @property
    def model_path(self) -> str:
        assert self.cfg.model is not None
        return self.cfg.model

    @property
    def state(self) -> Optional[RegionState]:
        return self.debouncer.state

    @property
    def is_full_frame(self) -> bool:
        return self.cfg.box == (0.0, 0.0, 1.0, 1.0)

    def crop(self, frame: np.ndarray) -> np.ndarray:
        """A view of the region in ``frame`` (no copy: valid while the frame is)."""
        if self.is_full_frame:
            return frame
        x1, y1, x2, y2 = pixel_box(self.cfg.box, frame.shape[1], frame.shape[0])
        return frame[y1:y2, x1:x2]

    def use_model(self, classifier: Any) -> None:
        """Called before each classification. A new model (reloaded, uploaded, rolled back)
        starts its smoothing afresh; the debounced state is kept when the new model has the
        same labels (the chain of states, and its ``previous``, goes on), and starts afresh
        when the labels differ (the old state may not even be one of them)."""
        identity = id(classifier)
        labels = tuple(classifier.info.labels)
        if self._model_identity is not None and identity != self._model_identity:
            self._history.clear()
            if labels != self._model_labels:
                self.debouncer.reset()
        self._model_identity, self._model_labels = identity, labels

    def smooth(self, probabilities: np.ndarray, window: int) -> np.ndarray:
        """The mean of the last ``window`` probability vectors (1 = as is)."""
        if self._history.maxlen != window:
            self._history = deque(self._history, maxlen=window)
        self._history.append(probabilities)
        if window == 1:
            return probabilities
        mean: np.ndarray = np.mean(np.stack(self._history), axis=0)
        return mean

    def retune(self, cfg: RegionConfig) -> None:
        """Apply new, validated and resolved settings; the current state is kept."""
        self.cfg = cfg
        self.trigger.retune(cfg)
        assert cfg.min_score is not None
        self.debouncer.retune(cfg.confirm, cfg.min_score)

    def settings(self) -> dict[str, Any]:
        keys = ("box", "model", "top_k", "min_score", "trigger", "interval_s", "motion_threshold",
                "max_idle_s", "confirm")
        values = self.cfg.model_dump(include=set(keys))
        values["box"] = list(self.cfg.box)
        return values
