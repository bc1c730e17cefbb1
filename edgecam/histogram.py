"""Latency figures: histograms with cumulative buckets (rendered in Prometheus' text format,
kept by the preview hubs and exposed by the web app's /metrics), and rolling windows of the
latest samples for percentiles (the stats).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from typing import Iterable, Optional

import numpy as np

# Upper bounds in seconds: 1 ms .. 10 s, dense where a Pi's inference sits (20-200 ms).
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)


class Histogram:
    """Cumulative-bucket histogram. Not locked: the owner (PreviewHub) locks."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self._counts = [0] * (len(self.bounds) + 1)  # last slot: above every bound (+Inf)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        if math.isnan(value):
            return
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def snapshot(self) -> "HistogramSnapshot":
        cumulative, running = [], 0
        for n in self._counts:
            running += n
            cumulative.append(running)
        return HistogramSnapshot(self.bounds, tuple(cumulative), self.count, self.sum)


class HistogramSnapshot:
    """An immutable copy taken under the owner's lock, rendered outside it."""

    def __init__(self, bounds: tuple[float, ...], cumulative: tuple[int, ...], count: int, total: float) -> None:
        self.bounds, self.cumulative, self.count, self.sum = bounds, cumulative, count, total

    @staticmethod
    def merge(snapshots: "list[HistogramSnapshot]") -> "HistogramSnapshot":
        """One histogram over several (each camera's hub keeps its own); same buckets."""
        first = snapshots[0]
        cumulative = tuple(sum(s.cumulative[i] for s in snapshots) for i in range(len(first.cumulative)))
        return HistogramSnapshot(first.bounds, cumulative, sum(s.count for s in snapshots),
                                 sum(s.sum for s in snapshots))

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for bound, n in zip(self.bounds, self.cumulative):
            lines.append(f'{name}_bucket{{le="{fmt_number(bound)}"}} {n}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.cumulative[-1]}')
        lines.append(f"{name}_sum {fmt_number(self.sum)}")
        lines.append(f"{name}_count {self.count}")
        return lines


def fmt_number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def percentile(values: "deque[float] | list[float]", q: float) -> Optional[float]:
    if not values:
        return None
    return round(float(np.percentile(np.fromiter(values, dtype=np.float64), q)), 3)


class LatencyWindow:
    """Thread-safe rolling window of the most recent latency samples (ms)."""

    def __init__(self, size: int = 1000) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()  # guards _samples against the stats reader

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._samples.append(value_ms)

    def percentiles(self) -> dict[str, Optional[float]]:
        with self._lock:
            samples = list(self._samples)
        return {"p50": percentile(samples, 50), "p99": percentile(samples, 99)}
