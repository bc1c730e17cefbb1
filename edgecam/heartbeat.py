"""Proof of life for the daemon's loops.

Every loop (capture, inference, publisher) stamps its Heartbeat once per turn,
idle turns included, and never blocks for long without stamping. The daemon's
watchdog check and ``/health`` read the stamps: a loop whose stamp is too old
is wedged, whatever its thread's ``is_alive()`` says.
"""

from __future__ import annotations

import time
from typing import Callable, Optional


class Heartbeat:
    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._last: Optional[float] = None

    def beat(self) -> None:
        self._last = self._clock()  # a float store: atomic, no lock needed

    def age(self) -> Optional[float]:
        """Seconds since the last beat; None before the first."""
        last = self._last
        return None if last is None else self._clock() - last

    def stale(self, limit_s: float) -> bool:
        """True once the loop has beaten and then stayed silent for longer than ``limit_s``."""
        age = self.age()
        return age is not None and age > limit_s
