"""Prometheus text exposition (format 0.0.4) without a client library.

The daemon must not depend on prometheus_client, and what it exposes is small:
counters and gauges from the stats snapshot plus two latency histograms kept by
the preview hub. Names are prefixed ``edgecam_``, counters end in ``_total``,
latencies are in seconds (Prometheus base unit).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional

from edgecam.histogram import HistogramSnapshot
from edgecam.histogram import fmt_number as _fmt

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


