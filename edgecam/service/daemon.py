"""The daemon: wires cameras -> ring buffers -> regions/classifiers -> publisher and runs them.

Threads (each a small class with start()/stop(), all sharing one stop event):
    capture    one per camera: source.read() -> its ring     (sources/capture.py)
    inference  every camera's newest frame -> region Results (service/inference.py)
    publisher  queue -> policy -> sinks                      (publish/publisher.py)
plus optional preview window / HTTP server threads. The main thread only
waits, emits stats every `stats.interval_s`, and tells systemd how we are
(service/health.py decides). The Daemon is also the DaemonControl that MQTT
commands and the web preview use (service/control.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Mapping, Optional, Sequence

from edgecam import __version__
from edgecam.config import Config
from edgecam.dataset.collector import Collector
from edgecam.errors import ConfigError
from edgecam.inference.pool import ModelPool
from edgecam.preview.hub import PreviewHub
from edgecam.publish.policy import make_policy
from edgecam.publish.publisher import PublisherThread
from edgecam.publish.sink import Sink
from edgecam.publish.stdout import StdoutSink
from edgecam.regions.region import Region, resolve
from edgecam.result import Result
from edgecam.service.control import ControlMixin
from edgecam.inference.deploy import Deployer
from edgecam.service.health import Health
from edgecam.inference.thread import FrameResults, InferenceSettings, InferenceThread
from edgecam.service.sdnotify import SdNotifier, WatchdogPinger
from edgecam.service.stats import LatencyWindow, StatsCollector, format_stats_line
from edgecam.sources.base import FrameSource
from edgecam.sources.camera import Camera

log = logging.getLogger(__name__)


def inference_settings(config: Config) -> InferenceSettings:
    return InferenceSettings(max_fps=config.inference.max_fps, smoothing=config.inference.smoothing)


class Daemon(ControlMixin):
    """Owns every component for one run. ``run()`` blocks until stopped.

    ``source`` replaces the first camera's source and ``sources`` any camera's, by name
    (tests and benchmarks feed frames from memory); the others come from the config."""

    def __init__(self, config: Config, stdout_results: Optional[bool] = None,
                 duration_s: Optional[float] = None, source: Optional[FrameSource] = None,
                 extra_sinks: Sequence[Sink] = (), sources: Optional[Mapping[str, FrameSource]] = None) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self.duration_s = duration_s
        self.notifier = SdNotifier()
        self.watchdog = WatchdogPinger(self.notifier)
        self.pool = ModelPool(config.model.threads)
        self.wake = threading.Event()
        self.cameras: dict[str, Camera] = {}
        self.regions: dict[str, list[Region]] = {}
        self._build_cameras(self._given_sources(source, sources))
        self.regions_by_name = {camera: {r.name: r for r in regions} for camera, regions in self.regions.items()}
        self.classifier = self._default_classifier()
        self._warn_if_untrained()
        self.hubs = {name: PreviewHub(config.preview.http.max_fps,
                                      boxes={r.name: r.cfg.box for r in self.regions[name]})
                     for name in self.cameras}
        self.latency = LatencyWindow()
        self.inference_latency = LatencyWindow()
        self.region_latency = {region.key: LatencyWindow(200) for regions in self.regions.values()
                               for region in regions}
        self.collector = Collector(config.collect, [r for rs in self.regions.values() for r in rs], self.stop_event)
        self.inference = InferenceThread(list(self.cameras.values()), self.regions, self.pool,
                                         inference_settings(config), self._on_frame, self.stop_event,
                                         config.device_id, self.wake)
        self.mqtt_sink: Optional[Sink] = None
        sinks = [*self._make_sinks(stdout_results), *extra_sinks]
        self.publisher = PublisherThread(sinks, self._policy_factory(), config.publish.queue_size,
                                         self.stop_event, on_published=self._on_published)
        self.stats_collector = StatsCollector(self.counters, self.latency, self.inference_latency)
        self.health_check = Health(self)
        self.deployer = Deployer(self)
        self._reload = threading.Event()  # SIGHUP: reload changed model files (on the main thread)
        self._extras: list[Any] = []  # preview window / HTTP server, started before the core
        self._ready = threading.Event()
        self._settings_lock = threading.Lock()  # serialises apply_settings callers (MQTT, HTTP)

    # ----------------------------------------------------------------- set-up
    def _given_sources(self, source: Optional[FrameSource],
                       sources: Optional[Mapping[str, FrameSource]]) -> dict[str, FrameSource]:
        """camera name -> the FrameSource the caller gave for it (``source`` is the first camera's)."""
        names = list(self.config.camera_configs())
        given = dict(sources or {})
        unknown = [name for name in given if name not in names]
        if unknown:
            raise ConfigError(f"sources given for unknown camera(s) {', '.join(unknown)} "
                              f"(cameras: {', '.join(names)})")
        if source is not None:
            if names[0] in given:
                raise ConfigError(f"camera {names[0]} given two sources (source= and sources=)")
            given[names[0]] = source
        return given

    def _build_cameras(self, sources: Mapping[str, FrameSource]) -> None:
        """One Camera per config entry; every region's model loaded (once per file)."""
        config = self.config
        for name, cfg in config.camera_configs().items():
            where = f"cameras.{name}" if config.cameras else "source"
            self.cameras[name] = Camera(name, cfg, config.buffer.capacity, self.stop_event, self.wake.set,
                                        source=sources.get(name))
            self.regions[name] = []
            for region_name, region_cfg in cfg.regions.items():
                resolved = resolve(region_cfg, config)
                key = f"{where}.regions.{region_name}.model" if region_cfg.model else "model.path"
                self.pool.load(resolved.model or config.model.path, key)
                self.regions[name].append(Region(name, region_name, resolved, config.inference.smoothing))

    def _default_classifier(self) -> Any:
        """What /classify uploads and the state topic use: model.path when a region uses
        it, else the first region's model (model.path need not exist then)."""
        paths = [region.model_path for regions in self.regions.values() for region in regions]
        default = self.config.model.path
        return self.pool.get(default if default in paths else paths[0])

    def _warn_if_untrained(self) -> None:
        for path, classifier in self.pool.items():
            info = classifier.info
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

    def _policy_factory(self) -> Any:
        publish = self.config.publish
        return lambda: make_policy(publish)

    def _make_extras(self) -> list[Any]:
        extras: list[Any] = []
        preview = self.config.preview
        if preview.window:
            from edgecam.preview.window import PreviewWindow

            window_only = not self.config.mqtt.enabled and not preview.http.enabled
            first = next(iter(self.hubs.values()))
            extras.append(PreviewWindow(first, self.stop_event, window_only=window_only))
        if preview.http.enabled:
            from edgecam.web import HttpPreview

            extras.append(HttpPreview(preview.http, self.hubs, self))
        return extras

    # -------------------------------------------------------------- lifecycle
    def run(self) -> int:
        """Start everything, wait for a stop, shut down. Returns the exit code."""
        self._log_start()
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
        self.collector.start()
        self.inference.start()
        for camera in self.cameras.values():
            camera.start()
        try:
            self._wait_loop()
        finally:
            self._shutdown()
        return self._exit_code()

    def _log_start(self) -> None:
        info = self.classifier.info
        log.info("edgecam %s: device %s, %d camera(s), model %s (%s, %dpx, %d threads)", __version__,
                 self.config.device_id, len(self.cameras), info.name, info.precision, info.input_size,
                 self.config.model.threads)
        for name, camera in self.cameras.items():
            regions = ", ".join(f"{r.name} {list(r.cfg.box)} ({r.cfg.trigger})" for r in self.regions[name])
            log.info("camera %s: %s; regions: %s", name, camera.source.describe(), regions)

    def stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        """From the SIGHUP handler: the main loop reloads, the handler only flags."""
        self._reload.set()

    def _wait_loop(self) -> None:
        started = time.monotonic()
        next_stats = started + self.config.stats.interval_s
        while not self.stop_event.wait(0.2):
            now = time.monotonic()
            if self.duration_s is not None and now - started >= self.duration_s:
                log.info("duration of %.1f s reached, stopping", self.duration_s)
                break
            if self._sources_finished():
                log.info("source ended, stopping")
                break
            if self._reload.is_set():
                self._reload.clear()
                log.info("SIGHUP: reloading changed model files: %s", self.deployer.reload_changed())
            if self.health_check.liveness(self.health_check.watchdog_stall_s())[0]:
                self.watchdog.ping()
            if now >= next_stats:
                next_stats = now + self.config.stats.interval_s
                self._emit_stats()

    def _sources_finished(self) -> bool:
        """Every camera is a non-looping file that has ended, and its last frame has left the pipeline."""
        def drained(camera: Camera) -> bool:
            counters = camera.ring.counters()
            return camera.capture.state == "ended" and counters["pending"] == 0 and counters["held"] == 0

        return all(drained(camera) for camera in self.cameras.values()) and self.publisher.queue_depth == 0

    def _shutdown(self) -> None:
        log.info("stopping")
        self.notifier.stopping()
        self.stop_event.set()
        for camera in self.cameras.values():
            camera.ring.close()
        for extra in reversed(self._extras):
            extra.stop()
        for camera in self.cameras.values():
            camera.stop()
        self.inference.stop()
        self.collector.stop()
        self.publisher.stop()
        log.info("stopped: %s", format_stats_line(self.stats_collector.snapshot()))

    def _exit_code(self) -> int:
        return 1 if self.inference.error is not None else 0

    # ---------------------------------------------------------- thread hooks
    def _on_frame(self, frame: FrameResults) -> None:
        """Called on the inference thread while the frame is still held."""
        states = {region.name: state.label for region, state in frame.changes}
        self.hubs[frame.camera.name].offer(frame.image, frame.results, states)
        if self.config.collect.enabled:
            self.collector.offer(frame.image, self.regions_by_name[frame.camera.name], frame.results, frame.changes)
        for result in frame.results:
            self.inference_latency.add(result.inference_ms)
            self.publisher.submit(result)
        for region, state in frame.changes:
            payload = state.to_payload(self.config.device_id, region.camera, region.name)
            log.info("state: %s/%s %s -> %s (%.2f) since %s", region.camera, region.name, state.previous,
                     state.label, state.score, payload["since"])
            self.publisher.submit_region_state(payload)
        if not self._ready.is_set() and frame.results:
            self._ready.set()
            self.notifier.ready()
            top = frame.results[0].top[0]
            log.info("ready: first frame classified (%s %.2f)", top.label, top.score)

    def _on_published(self, result: Result) -> None:
        self.latency.add(result.total_ms)
        window = self.region_latency.get((result.camera, result.region))
        if window is not None:
            window.add(result.total_ms)

    def _emit_stats(self) -> None:
        stats = self.stats_collector.snapshot()
        log.info("stats: %s", format_stats_line(stats))
        self.publisher.submit_stats(stats)
        lat = stats["latency_ms"]
        lost = [name for name, camera in self.cameras.items() if not camera.connected]
        sources = f"{len(self.cameras) - len(lost)}/{len(self.cameras)} cameras up"
        self.notifier.status(f"{stats['inference_fps']:.1f} fps, latency p50 {lat['p50']} ms, {sources}")
