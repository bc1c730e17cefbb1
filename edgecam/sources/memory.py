"""An in-memory source: cycles through given frames, paced or as fast as possible.

Used by the pipeline benchmark (to measure the daemon without camera or codec
cost) and by tests that need a source much faster than inference.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np

from edgecam.errors import SourceError
from edgecam.sources.base import FrameSource


class MemorySource(FrameSource):
    def __init__(self, frames: Sequence[np.ndarray], fps: Optional[float] = None,
                 source_id: str = "memory") -> None:
        if not frames:
            raise SourceError("MemorySource needs at least one frame")
        self._frames = list(frames)
        self._interval = 1.0 / fps if fps else 0.0
        self._next_due = 0.0
        self._index = 0
        self.source_id = source_id
        self.reads = 0

    def open(self) -> None:
        self._next_due = time.monotonic()

    def read(self) -> np.ndarray:
        if not self._interval:
            # Like a real device read, give up the GIL once per frame; otherwise this
            # loop would hold it for a whole switch interval (5 ms) while inference waits.
            time.sleep(0)
        else:
            delay = self._next_due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_due = max(self._next_due + self._interval, time.monotonic() - self._interval)
        frame = self._frames[self._index % len(self._frames)]
        self._index += 1
        self.reads += 1
        return frame

    def close(self) -> None:
        pass
