"""The daemon: wires source -> ring buffer -> classifier -> publisher and runs them.

Threads (each a small class with start()/stop(), all sharing one stop event):
    capture   source.read() -> ring.put()          (sources/capture.py)
    inference ring.get_latest() -> Result          (service/inference.py)
    publisher queue -> policy -> sinks             (publish/publisher.py)
plus optional preview window / HTTP server threads. The main thread only
waits, emits stats every `stats.interval_s`, and tells systemd how we are.
The Daemon object is also the DaemonControl that MQTT commands and the web
preview use (pause, settings, snapshot, health...).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional, Sequence

import numpy as np

from edgecam import __version__
from edgecam.buffer.ring import FrameRing
from edgecam.config import Config
from edgecam.model.classifier import Classifier
from edgecam.model.types import Label
from edgecam.preview.hub import PreviewHub
from edgecam.publish.policy import make_policy
from edgecam.publish.publisher import PublisherThread
from edgecam.publish.sink import Sink
from edgecam.publish.stdout import StdoutSink
from edgecam.result import Result
from edgecam.service.inference import InferenceSettings, InferenceThread
from edgecam.service.sdnotify import SdNotifier, WatchdogPinger
from edgecam.service.settings import current_settings, validate_update
from edgecam.service.stats import LatencyWindow, StatsCollector, format_stats_line
from edgecam.sources.base import FrameSource
from edgecam.sources.capture import CaptureThread
from edgecam.sources.factory import make_source

log = logging.getLogger(__name__)

#: A loop whose heartbeat is older than this is wedged (for /health; the watchdog
#: check uses half the watchdog interval when that is shorter, so a hang stops the
#: pings well before systemd's deadline).
STALL_S = 10.0
MIN_STALL_S = 0.2


def inference_settings(config: Config) -> InferenceSettings:
    inference = config.inference
    return InferenceSettings(
        top_k=config.model.top_k, max_fps=inference.max_fps, smoothing=inference.smoothing,
        skip_unchanged=inference.skip_unchanged.enabled, skip_threshold=inference.skip_unchanged.threshold,
        max_skip_s=inference.skip_unchanged.max_skip_s,
    )


class Daemon:
    """Owns every component for one run. ``run()`` blocks until stopped."""

    def __init__(self, config: Config, stdout_results: Optional[bool] = None,
                 duration_s: Optional[float] = None, source: Optional[FrameSource] = None,
                 extra_sinks: Sequence[Sink] = ()) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self.duration_s = duration_s
        self.notifier = SdNotifier()
        self.watchdog = WatchdogPinger(self.notifier)
        self.classifier = Classifier(config.model.path, threads=config.model.threads)
        self._warn_if_untrained()
        self.source = source if source is not None else make_source(config.source)
        self.ring = FrameRing(config.buffer.capacity)
        self.capture = CaptureThread(self.source, self.ring, self.stop_event, config.source.backoff)
        self.capture.on_state_change(self._on_source_state)
        self.hub = PreviewHub(config.preview.http.max_fps)
        self.latency = LatencyWindow()
        self.inference_latency = LatencyWindow()
        self.inference = InferenceThread(self.ring, self.classifier, inference_settings(config),
                                         self._on_result, self.stop_event, config.device_id,
                                         self.source.source_id)
        self.mqtt_sink: Optional[Sink] = None
        sinks = [*self._make_sinks(stdout_results), *extra_sinks]
        self.publisher = PublisherThread(sinks, make_policy(config.publish), config.publish.queue_size,
                                         self.stop_event, on_published=self._on_published)
        self.stats_collector = StatsCollector(self.counters, self.latency, self.inference_latency)
        self._extras: list[Any] = []  # preview window / HTTP server, started after the core
        self._ready = threading.Event()
        self._settings_lock = threading.Lock()  # serialises apply_settings callers (MQTT, HTTP)

    # ----------------------------------------------------------------- set-up
    def _warn_if_untrained(self) -> None:
        info = self.classifier.info
        if not info.trained:
            log.warning("!" * 72)
            log.warning("MODEL %s IS UNTRAINED (weights=%s): its labels are meaningless. "
                        "Use it for benchmarks and pipeline tests only.", info.name, info.weights)
            log.warning("!" * 72)

    def _make_sinks(self, stdout_results: Optional[bool]) -> list[Sink]:
        sinks: list[Sink] = []
        if self.config.mqtt.enabled:
            from edgecam.publish.mqtt import MqttSink  # paho only when MQTT is on

            self.mqtt_sink = MqttSink(self.config, self)
            sinks.append(self.mqtt_sink)
        if stdout_results is None:
            stdout_results = not self.config.mqtt.enabled  # JSON lines are the default without MQTT
        if stdout_results:
            sinks.append(StdoutSink())
        return sinks

    def _make_extras(self) -> list[Any]:
        extras: list[Any] = []
        preview = self.config.preview
        if preview.window:
            from edgecam.preview.window import PreviewWindow

            window_only = not self.config.mqtt.enabled and not preview.http.enabled
            extras.append(PreviewWindow(self.hub, self.stop_event, window_only=window_only))
        if preview.http.enabled:
            from edgecam.preview.http import HttpPreview

            extras.append(HttpPreview(preview.http, self.hub, self))
        return extras

    # -------------------------------------------------------------- lifecycle
    def run(self) -> int:
        """Start everything, wait for a stop, shut down. Returns the exit code."""
        info = self.classifier.info
        log.info("edgecam %s: device %s, source %s, model %s (%s, %dpx, %d threads)", __version__,
                 self.config.device_id, self.source.describe(), info.name, info.precision,
                 info.input_size, self.config.model.threads)
        # The preview binds its port first: a port in use is one clear error (exit 2)
        # before any pipeline thread exists.
        self._extras = self._make_extras()
        try:
            for extra in self._extras:
                extra.start()
        except BaseException:
            for extra in self._extras:
                extra.stop()
            raise
        self.publisher.start()
        self.publisher.submit_state(self.state())
        self.inference.start()
        self.capture.start()
        try:
            self._wait_loop()
        finally:
            self._shutdown()
        return self._exit_code()

    def stop(self) -> None:
        self.stop_event.set()

    def _wait_loop(self) -> None:
        started = time.monotonic()
        next_stats = started + self.config.stats.interval_s
        while not self.stop_event.wait(0.2):
            now = time.monotonic()
            if self.duration_s is not None and now - started >= self.duration_s:
                log.info("duration of %.1f s reached, stopping", self.duration_s)
                break
            if self._source_finished():
                log.info("source ended, stopping")
                break
            if self.liveness(self._watchdog_stall_s())[0]:
                self.watchdog.ping()
            if now >= next_stats:
                next_stats = now + self.config.stats.interval_s
                self._emit_stats()

    def _source_finished(self) -> bool:
        """A non-looping file has ended and its last frame has left the pipeline."""
        return (self.capture.state == "ended" and self.ring.counters()["pending"] == 0
                and self.publisher.queue_depth == 0)

    def _shutdown(self) -> None:
        log.info("stopping")
        self.notifier.stopping()
        self.stop_event.set()
        self.ring.close()
        for extra in reversed(self._extras):
            extra.stop()
        self.capture.stop()
        self.inference.stop()
        self.publisher.stop()
        self.source.close()
        log.info("stopped: %s", format_stats_line(self.stats_collector.snapshot()))

    def _exit_code(self) -> int:
        if self.inference.error is not None:
            return 1
        return 0

    # ---------------------------------------------------------- thread hooks
    def _on_result(self, result: Result, frame: np.ndarray) -> None:
        """Called on the inference thread while the frame is still held."""
        self.inference_latency.add(result.inference_ms)
        self.hub.offer(frame, result)
        self.publisher.submit(result)
        if not self._ready.is_set():
            self._ready.set()
            self.notifier.ready()
            log.info("ready: first frame classified (%s %.2f)", result.top[0].label, result.top[0].score)

    def _on_published(self, result: Result) -> None:
        self.latency.add(result.total_ms)

    def _on_source_state(self, state: str, error: Optional[str]) -> None:
        self.publisher.submit_state(self.state())

    def _emit_stats(self) -> None:
        stats = self.stats_collector.snapshot()
        log.info("stats: %s", format_stats_line(stats))
        self.publisher.submit_stats(stats)
        lat = stats["latency_ms"]
        self.notifier.status(f"{stats['inference_fps']:.1f} fps, latency p50 {lat['p50']} ms, "
                             f"source {self.capture.state}")

    # ------------------------------------------------------ DaemonControl
    @property
    def paused(self) -> bool:
        return self.inference.paused

    def pause(self) -> None:
        self.inference.paused = True
        log.info("paused")
        self.publisher.submit_state(self.state())

    def resume(self) -> None:
        self.inference.paused = False
        log.info("resumed")
        self.publisher.submit_state(self.state())

    def apply_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        with self._settings_lock:
            publish, inference = validate_update(self.config.publish, self.config.inference, settings)
            self.config = self.config.model_copy(update={"publish": publish, "inference": inference})
            self.publisher.policy = make_policy(publish)
            self.inference.settings = self.inference.settings.replace(
                max_fps=inference.max_fps, smoothing=inference.smoothing)
            applied = current_settings(publish, inference)
        log.info("settings changed: %s", applied)
        return applied

    def counters(self) -> dict[str, Any]:
        ring = self.ring.counters()
        mqtt = self.mqtt_sink.counters() if self.mqtt_sink is not None else {}
        return {
            "device": self.config.device_id,
            "captured": ring["captured"],
            "processed": self.inference.processed,
            "dropped": ring["dropped"],
            "pending": ring["pending"],
            "skipped": self.inference.skipped,
            "inference_errors": self.inference.errors,
            "bad_frames": self.capture.bad_frames,
            "published": self.publisher.published,
            "suppressed": self.publisher.suppressed,
            "publish_dropped": self.publisher.dropped + mqtt.get("dropped", 0) + self._stdout_dropped(),
            "queue_depth": self.publisher.queue_depth + mqtt.get("queued", 0),
            "mqtt_connected": mqtt.get("connected") if self.mqtt_sink is not None else None,
            "source_state": self.capture.state,
            "paused": self.paused,
        }

    def _stdout_dropped(self) -> int:
        return sum(getattr(sink, "dropped", 0) for sink in self.publisher.sinks if isinstance(sink, StdoutSink))

    def stats(self) -> dict[str, Any]:
        """The latest periodic snapshot, with the counters refreshed to this instant."""
        return {**(self.stats_collector.latest or self.stats_collector.snapshot()), **self.counters()}

    def state(self) -> dict[str, Any]:
        info = self.classifier.info
        return {
            "device": self.config.device_id,
            "version": __version__,
            "paused": self.paused,
            "source": {"id": self.source.source_id, "connected": self.capture.connected,
                       "state": self.capture.state, "error": self.capture.last_error},
            "model": {"name": info.name, "arch": info.arch, "precision": info.precision,
                      "input_size": info.input_size, "trained": info.trained},
            "settings": current_settings(self.config.publish, self.config.inference),
        }

    def snapshot_jpeg(self) -> Optional[bytes]:
        return self.hub.latest_jpeg()

    def _watchdog_stall_s(self) -> float:
        interval = self.watchdog.period_s
        return STALL_S if interval is None else max(MIN_STALL_S, min(STALL_S, interval))

    def liveness(self, stall_s: float = STALL_S) -> tuple[bool, str]:
        """(True, "ok") while every loop makes progress; the watchdog pings only then.

        A camera that is lost but retried with backoff is alive (a restart would not
        help); one whose open or read hangs in native code past its deadline is not.
        Paused means the inference loop is alive and idle, not "skip the checks"."""
        source_limit = stall_s + self.config.source.read_timeout_s
        loops = ((self.capture.heartbeat, source_limit), (self.inference.heartbeat, stall_s),
                 (self.publisher.heartbeat, stall_s + 1.0))
        for heartbeat, limit in loops:
            if heartbeat.stale(limit):
                return False, f"{heartbeat.name} loop stuck for {heartbeat.age():.0f} s"
        if not self.inference.alive:
            return False, "inference thread is not running"
        stuck = self.source.stuck_for()
        if stuck > source_limit:
            return False, f"source {self.source.source_id}: a call into it has hung for {stuck:.0f} s"
        problems = self.publisher.problems()
        if problems:
            return False, "; ".join(problems)
        if not self.paused and self.capture.connected:
            waited = self._since_progress()
            if waited is not None and waited > stall_s + self._expected_period_s():
                return False, f"inference stuck: no result for {waited:.0f} s"
        return True, "paused" if self.paused else "ok"

    def _since_progress(self) -> Optional[float]:
        """Seconds since the last result or skip, counted from the first frame at the latest."""
        stamps = [t for t in (self.inference.last_progress_mono, self.capture.connected_since_mono)
                  if t is not None]
        return time.monotonic() - max(stamps) if stamps else None

    def _expected_period_s(self) -> float:
        max_fps = self.inference.settings.max_fps
        return 1.0 / max_fps if max_fps > 0 else 0.0

    def health(self) -> tuple[bool, str]:
        """/health: liveness, plus the camera delivering and a first result."""
        alive, reason = self.liveness(self._watchdog_stall_s())
        if not alive:
            return False, reason
        if not self.capture.connected:
            return False, f"source {self.capture.state}: {self.capture.last_error or 'no frames yet'}"
        if self.inference.last_result_mono is None and not self.paused:
            return False, "no frame classified yet"
        return True, reason

    def classify_image(self, bgr: np.ndarray) -> tuple[list[Label], float]:
        start = time.perf_counter()
        labels = self.classifier.classify(bgr, k=self.config.model.top_k)
        return labels, (time.perf_counter() - start) * 1000.0

