"""Prometheus text exposition (format 0.0.4) without a client library.

The daemon must not depend on prometheus_client, and what it exposes is small:
counters and gauges from the stats snapshot plus two latency histograms kept by
the preview hub. Names are prefixed ``edgecam_``, counters end in ``_total``,
latencies are in seconds (Prometheus base unit).
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Iterable, Mapping, Optional

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds in seconds: 1 ms .. 10 s, dense where a Pi's inference sits (20-200 ms).
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)

# stats() key -> (metric name, type, help, multiplier). Missing or None values are left out.
STATS_METRICS: tuple[tuple[str, str, str, str, float], ...] = (
    ("captured", "edgecam_frames_captured_total", "counter", "Frames read from the source.", 1.0),
    ("processed", "edgecam_frames_processed_total", "counter", "Frames classified.", 1.0),
    ("dropped", "edgecam_frames_dropped_total", "counter", "Frames overwritten before inference took them.", 1.0),
    ("skipped", "edgecam_frames_skipped_total", "counter", "Frames not classified: scene unchanged.", 1.0),
    ("published", "edgecam_results_published_total", "counter", "Results handed to the sinks.", 1.0),
    ("publish_dropped", "edgecam_results_publish_dropped_total", "counter",
     "Results dropped because the publish queue was full.", 1.0),
    ("queue_depth", "edgecam_publish_queue_depth", "gauge", "Results waiting in the publish queue.", 1.0),
    ("publish_expired", "edgecam_results_expired_total", "counter",
     "Results never sent because they were older than mqtt.result_expiry_s.", 1.0),
    ("mqtt_connected", "edgecam_mqtt_connected", "gauge", "1 while connected to the MQTT broker.", 1.0),
    ("outbox_pending", "edgecam_outbox_pending", "gauge", "State changes waiting for the broker's acknowledgement.",
     1.0),
    ("outbox_evicted", "edgecam_outbox_evicted_total", "counter",
     "State changes dropped because the outbox was full.", 1.0),
    ("outbox_durable", "edgecam_outbox_durable", "gauge", "1 while the outbox is on disk, 0 in memory only.", 1.0),
    ("capture_fps", "edgecam_capture_fps", "gauge", "Frames per second read from the source.", 1.0),
    ("inference_fps", "edgecam_inference_fps", "gauge", "Frames per second classified.", 1.0),
    ("cpu_percent", "edgecam_cpu_percent", "gauge", "Process CPU use in percent of one core.", 1.0),
    ("rss_mb", "edgecam_resident_memory_bytes", "gauge", "Resident set size of the daemon.", 1024.0 * 1024.0),
    ("uptime_s", "edgecam_uptime_seconds", "gauge", "Seconds since the daemon started.", 1.0),
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
            lines.append(f'{name}_bucket{{le="{_fmt(bound)}"}} {n}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.cumulative[-1]}')
        lines.append(f"{name}_sum {_fmt(self.sum)}")
        lines.append(f"{name}_count {self.count}")
        return lines


def render_metrics(
    stats: Mapping[str, Any],
    histograms: Mapping[str, tuple[str, HistogramSnapshot]],
    extra: Optional[Iterable[tuple[str, str, str, float]]] = None,
) -> str:
    """The full /metrics body.

    ``histograms`` maps metric name -> (help, snapshot); ``extra`` adds
    (name, type, help, value) samples such as edgecam_healthy.
    """
    lines: list[str] = []
    for key, name, kind, help_text, factor in STATS_METRICS:
        value = _number(stats.get(key))
        if value is not None:
            lines += _sample(name, kind, help_text, value * factor)
    for name, kind, help_text, value in extra or ():
        lines += _sample(name, kind, help_text, value)
    for name, (help_text, snap) in histograms.items():
        lines += snap.render(name, help_text)
    return "\n".join(lines) + "\n"


def _sample(name: str, kind: str, help_text: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_fmt(value)}"]


def _number(value: Any) -> Optional[float]:
    """bool -> 0/1, numbers as float, anything else (None, strings) -> None."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and not math.isnan(float(value)):
        return float(value)
    return None


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
