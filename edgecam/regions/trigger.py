"""When a region is classified: every frame, every ``interval_s``, or on motion in its box.

``due(now)`` is asked before a frame is taken (so an interval region costs
nothing between its turns); ``wants(crop, now)`` after the crop is cut (motion
compares a 32x32 grey thumbnail of the crop with the last classified one,
~0.1 ms); ``classified(crop, now)`` records what was just classified.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from edgecam.config import RegionConfig

THUMB = 32


def thumbnail(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.int16)


class Trigger:
    def __init__(self, cfg: RegionConfig) -> None:
        self.kind = cfg.trigger
        self.interval_s = cfg.interval_s
        self.threshold = cfg.motion_threshold
        self.max_idle_s = cfg.max_idle_s
        self._last_classified = float("-inf")
        self._thumb: Optional[np.ndarray] = None

    def retune(self, cfg: RegionConfig) -> None:
        """New settings (a ``set`` command); what was last classified is kept."""
        self.kind, self.interval_s = cfg.trigger, cfg.interval_s
        self.threshold, self.max_idle_s = cfg.motion_threshold, cfg.max_idle_s

    def due(self, now: float) -> bool:
        if self.kind == "interval":
            return now - self._last_classified >= self.interval_s
        return True

    def wants(self, crop: np.ndarray, now: float) -> bool:
        if self.kind != "motion" or self._thumb is None or now - self._last_classified >= self.max_idle_s:
            return True
        return self.motion(crop) >= self.threshold

    def motion(self, crop: np.ndarray) -> float:
        """Mean absolute difference (0-255) to the last classified crop's thumbnail."""
        if self._thumb is None:
            return float("inf")
        return float(np.abs(thumbnail(crop) - self._thumb).mean())

    def classified(self, crop: np.ndarray, now: float) -> None:
        self._last_classified = now
        if self.kind == "motion":
            self._thumb = thumbnail(crop)
