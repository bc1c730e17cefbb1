"""Capped, jittered exponential backoff for every retry loop in edgecam."""

from __future__ import annotations

import random
import threading


class Backoff:
    """Delays of initial * 2**n, capped at max_s, with +/-25% jitter ("full" jitter
    would make the first retry too eager on a flapping camera).

    ``reset()`` after a success so the next failure starts small again.
    """

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0, jitter: float = 0.25,
                 rng: random.Random | None = None) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self.jitter = jitter
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.max_s, self.initial_s * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        spread = base * self.jitter
        return max(0.0, min(self.max_s, base + self._rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.attempts = 0

    def wait(self, stop: threading.Event) -> bool:
        """Sleep for the next delay unless ``stop`` is set first. Returns True if stopped."""
        return stop.wait(self.next_delay())
