"""Periodic statistics: rates, latency percentiles, CPU and memory of the process.

Only stdlib: CPU time comes from os.times(), RSS from /proc/self/statm (Linux),
so the daemon needs no psutil.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any, Callable

from edgecam.histogram import LatencyWindow

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    """Current resident set size in MiB."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE / 2**20
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class CpuMeter:
    """CPU use of this process between two calls, in % of one core."""

    def __init__(self) -> None:
        self._last = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float]:
        times = os.times()
        return time.monotonic(), times.user + times.system

    def percent(self) -> float:
        now = self._sample()
        wall = now[0] - self._last[0]
        cpu = now[1] - self._last[1]
        self._last = now
        return round(100.0 * cpu / wall, 1) if wall > 0 else 0.0


class StatsCollector:
    """Turns monotonically growing counters into a stats snapshot with rates.

    ``read_counters`` returns the raw counters (captured, processed, ...); the
    collector adds per-second rates since the previous snapshot, latency
    percentiles, CPU %, RSS and uptime.
    """

    def __init__(self, read_counters: Callable[[], dict[str, Any]], latency: LatencyWindow,
                 inference: LatencyWindow) -> None:
        self._read_counters = read_counters
        self._latency = latency
        self._inference = inference
        self._cpu = CpuMeter()
        self._started = time.monotonic()
        self._last_time = self._started
        self._last_counts: dict[str, int] = {"captured": 0, "processed": 0}
        self.latest: dict[str, Any] = {}

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        counters = self._read_counters()
        elapsed = max(now - self._last_time, 1e-6)
        cameras = counters.get("cameras", {})
        for name, camera in cameras.items():
            camera.update(self._rates(camera, f"{name}/", elapsed))
        # The totals are the cameras' sums: a camera removed by a live reload takes its
        # counts with it, and the totals' own difference would go negative.
        rates = {key: round(sum(camera[key] for camera in cameras.values()), 2)
                 for key in ("capture_fps", "inference_fps")} if cameras else self._rates(counters, "", elapsed)
        self._last_time = now
        stats = {
            **counters,
            **rates,
            "latency_ms": self._latency.percentiles(),
            "inference_ms": self._inference.percentiles(),
            "cpu_percent": self._cpu.percent(),
            "rss_mb": round(rss_mb(), 1),
            "uptime_s": round(now - self._started, 1),
        }
        self.latest = stats
        return stats


    def _rates(self, counters: dict[str, Any], prefix: str, elapsed: float) -> dict[str, float]:
        """capture_fps / inference_fps since the last snapshot (``prefix`` keys one camera's)."""
        rates = {}
        for name, key in (("capture", "captured"), ("inference", "processed")):
            value = counters.get(key, 0)
            rates[f"{name}_fps"] = round((value - self._last_counts.get(prefix + key, 0)) / elapsed, 2)
            self._last_counts[prefix + key] = value
        return rates


def format_stats_line(stats: dict[str, Any]) -> str:
    lat = stats.get("latency_ms", {})
    return (
        f"capture {stats.get('capture_fps', 0):.1f} fps, inference {stats.get('inference_fps', 0):.1f} fps, "
        f"dropped {stats.get('dropped', 0)}, skipped {stats.get('skipped', 0)}, "
        f"latency p50 {lat.get('p50')} ms p99 {lat.get('p99')} ms, "
        f"cpu {stats.get('cpu_percent', 0):.0f}%, rss {stats.get('rss_mb', 0):.0f} MB"
        + _outbox_part(stats)
    )


def _outbox_part(stats: dict[str, Any]) -> str:
    """", outbox 3 waiting" while state changes wait for the broker (and where they wait)."""
    pending = stats.get("outbox_pending")
    if not pending and not stats.get("outbox_evicted"):
        return ""
    where = "" if stats.get("outbox_durable") else " in memory"
    evicted = f", {stats['outbox_evicted']} evicted" if stats.get("outbox_evicted") else ""
    return f", outbox {pending} waiting{where}{evicted}"
