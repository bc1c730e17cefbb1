"""Monotonic frame pacing shared by the file and demo sources."""

from __future__ import annotations

import time
from typing import Optional


class Pacer:
    """Releases frames on the schedule t0 + n/fps so a file or the demo behaves
    like a camera. Deadlines come from time.monotonic(), so per-frame work does
    not add drift as ``sleep(1/fps)`` would. A reader that falls more than one
    interval behind is re-synchronised instead of getting a burst of frames."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.fps = fps
        self.interval = 1.0 / fps
        self._due: Optional[float] = None

    def wait(self) -> None:
        """Sleep until the next frame is due, then schedule the one after it."""
        now = time.monotonic()
        if self._due is None:
            self._due = now
        delay = self._due - now
        if delay > 0:
            time.sleep(delay)
        elif delay < -self.interval:
            self._due = now
        self._due += self.interval

    def reset(self) -> None:
        self._due = None
