"""The daemon: builds the components, starts them in order, stops them in reverse.

Like Frigate's ``FrigateApp``, it assembles and does nothing else:

    Pipeline        what runs: cameras (capture thread + ring each), regions, models
                    (edgecam/inference/pipeline.py), owned by the inference thread
    InferenceThread every camera's newest frame -> region Results (inference/thread.py)
    PublisherThread queue -> policy -> sinks: MQTT, stdout (publish/publisher.py)
    Collector       training samples, written off the hot path (dataset/collector.py)
    Controller      the control surface MQTT and the web app use (service/controller.py)
    HttpPreview     the web app (web/), and the preview window

One stop event ends them all. The main thread only waits: it emits stats every
``stats.interval_s``, feeds systemd's watchdog while ``Health`` says results flow,
and turns SIGHUP into a live reload of the config file.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Mapping, Optional, Sequence

from edgecam import __version__
from edgecam.config import Config
from edgecam.config.writer import ConfigFile
from edgecam.dataset.collector import Collector
from edgecam.errors import ConfigError, EdgecamError
from edgecam.inference.deploy import Deployer
from edgecam.inference.layout import Layout
from edgecam.inference.pipeline import Pipeline
from edgecam.inference.plan import CameraFactory
from edgecam.inference.pool import ModelLoader
from edgecam.inference.thread import FrameResults, InferenceThread
from edgecam.publish.policy import make_policy
from edgecam.publish.publisher import PublisherThread
from edgecam.publish.sink import Sink
from edgecam.publish.stdout import StdoutSink
from edgecam.regions.region import Region
from edgecam.service.continuity import region_models, restore_region_states
from edgecam.service.controller import Controller
from edgecam.service.health import Health
from edgecam.service.sdnotify import SdNotifier, WatchdogPinger
from edgecam.service.stats import format_stats_line
from edgecam.service.status import StatusReport
from edgecam.sources.base import FrameSource
from edgecam.sources.camera import Camera

log = logging.getLogger(__name__)


class Daemon:
    """Every component of one run. ``run()`` blocks until stopped.

    ``read_config`` re-reads the configuration for a live reload (SIGHUP, MQTT and HTTP
    ``reload``); ``config_path`` is the file the web app and MQTT may write changes into.
    ``source`` replaces the first camera's source and ``sources`` any camera's, by name
    (tests and benchmarks feed frames from memory); the others come from the config."""

    def __init__(self, config: Config, stdout_results: Optional[bool] = None,
                 duration_s: Optional[float] = None, source: Optional[FrameSource] = None,
                 extra_sinks: Sequence[Sink] = (), sources: Optional[Mapping[str, FrameSource]] = None,
                 read_config: Optional[Callable[[], Config]] = None, config_path: Optional[str] = None,
                 batch: bool = True) -> None:
        self.duration_s = duration_s
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.notifier = SdNotifier()
        self.watchdog = WatchdogPinger(self.notifier)
        factory = CameraFactory(self.wake.set, _given_sources(config, source, sources))
        self.pipeline = Pipeline(config, ModelLoader.for_config(config.model), factory)
        self._start_config: Optional[Config] = config  # built by prepare()
        self.collector = Collector(config.collect, self.stop_event)
        self.inference = InferenceThread(self.pipeline, self._on_frame, self.stop_event, config.device_id,
                                         self.wake, batch=batch, on_fault=self._on_fault,
                                         show=lambda run, image: run.hub.show(image))
        self.publisher = PublisherThread(lambda: make_policy(config.publish), config.publish.queue_size,
                                         self.stop_event, on_published=self._on_published)
        self.mqtt_sink: Optional[Any] = None
        self.status = StatusReport(self.pipeline, self.inference, self.publisher, self._mqtt_counters)
        self.health = Health(self.pipeline, self.inference, self.publisher, lambda: self.watchdog.period_s)
        config_file = ConfigFile(config_path) if config_path else None
        self.deployer = Deployer(self.pipeline, _persister(config_file, self.pipeline) if config_file else None)
        self.status.model_errors = self.deployer.errors
        self.controller = Controller(self.pipeline, self.status, self.health, self.collector, self.deployer,
                                     read_config or (lambda: config), config_file, on_changed=self._changed)
        self._sinks = [*self._make_sinks(config, stdout_results), *extra_sinks]
        self._reload = threading.Event()  # SIGHUP: the main loop queues a reload
        self._extras: list[Any] = []  # preview window / web app, started before the core
        self._ready = threading.Event()

    @property
    def config(self) -> Config:
        """The running configuration (a live reload replaces it)."""
        return self.pipeline.layout.config

    # ----------------------------------------------------------------- set-up
    @staticmethod
    def _warn_if_untrained(layout: Layout) -> None:
        for model in layout.models.values():
            info = model.classifier.info
            if not info.trained:
                log.warning("!" * 72)
                log.warning("MODEL %s IS UNTRAINED (weights=%s): its labels are meaningless. "
                            "Use it for benchmarks and pipeline tests only.", info.name, info.weights)
                log.warning("!" * 72)

    def _make_sinks(self, config: Config, stdout_results: Optional[bool]) -> list[Sink]:
        sinks: list[Sink] = []
        if config.mqtt.enabled:
            from edgecam.publish.mqtt import MqttSink  # paho only when MQTT is on

            self.mqtt_sink = MqttSink(config, self.controller, wait_for_description=True)
            sinks.append(self.mqtt_sink)
        if stdout_results is None:
            stdout_results = not config.mqtt.enabled  # JSON lines are the default without MQTT
        if stdout_results:
            sinks.append(StdoutSink())
        return sinks

    def _mqtt_counters(self) -> dict[str, Any]:
        return self.mqtt_sink.counters() if self.mqtt_sink is not None else {}

    def _make_web(self) -> list[Any]:
        if not self.config.preview.http.enabled:
            return []
        from edgecam.web import HttpPreview

        return [HttpPreview(self.config.preview.http, self.controller.hubs, self.controller)]

    def _make_window(self) -> list[Any]:
        preview = self.config.preview
        if not preview.window:
            return []
        from edgecam.preview.window import PreviewWindow

        window_only = not self.config.mqtt.enabled and not preview.http.enabled
        first = next(iter(self.pipeline.layout.cameras.values())).hub
        return [PreviewWindow(first, self.stop_event, window_only=window_only)]

    # -------------------------------------------------------------- lifecycle
    def prepare(self) -> None:
        """Build what runs (cameras, regions) and check and load every model file; idempotent.
        A region whose model fails is left out with its error (state topic, /health); an
        error only when no region can run. ``run()`` does this on the changes worker, so the
        main thread never runs a model and SIGTERM is heard while models load."""
        if self._start_config is None:
            return
        plan = self.pipeline.plan(self._start_config, disable_failing=True)
        self.pipeline.apply(plan)
        self._start_config = None
        for region, error in plan.errors.items():
            log.error("region %s does not run: %s", region, error)
        self._warn_if_untrained(self.pipeline.layout)

    def preflight(self) -> list[str]:
        """Every check ``run`` makes before it opens a camera (`edgecam check-config`): sources
        built, every model file checked and loaded, the web app's credentials read. Returns the
        problems ``run`` would report but start anyway with (a region left out); raises what
        would keep it from starting."""
        self.prepare()
        self._make_web()
        return [f"region {key} does not run: {error}" for key, error in self.pipeline.layout.errors.items()]

    def run(self) -> int:
        """Start everything, wait for a stop, shut down. Returns the exit code; raises the
        EdgecamError that kept it from starting (the command line: one line, exit 2)."""
        # The web app binds its port first: a port in use is one clear error (exit 2)
        # before any pipeline thread exists.
        web = self._make_web()
        try:
            for extra in web:
                extra.start()
        except BaseException:
            for extra in web:
                extra.stop()
            raise
        self._extras = web
        self.publisher.start(self._sinks)
        self.controller.start()
        self.collector.start()
        failed: Optional[BaseException] = None
        try:
            if self._wait_for(self.controller.run_serially(self.prepare)):
                self._start_pipeline()
                self._wait_loop()
        except EdgecamError as err:
            failed = err
        finally:
            self._shutdown()
        if failed is not None:
            raise failed
        return 1 if self.inference.error is not None else 0

    def _start_pipeline(self) -> None:
        self._log_start()
        window = self._make_window()
        for extra in window:
            extra.start()
        self._extras += window
        self.publisher.submit_state(self.status.state())
        self._describe(self.pipeline.layout)
        if self.mqtt_sink is not None:
            restore_region_states(self.mqtt_sink.memory.states(), self.pipeline.layout,
                                  self.publisher.submit_region_state)
        self.inference.start()
        for run in self.pipeline.layout.cameras.values():
            run.camera.start()

    def _wait_for(self, future: "Future[None]") -> bool:
        """The main thread waits (hearing SIGTERM) while the models load; False when stopped."""
        while not self.stop_event.is_set():
            try:
                future.result(timeout=0.2)
                return True
            except FutureTimeout:
                continue
        return False

    def _log_start(self) -> None:
        layout = self.pipeline.layout
        classifier = layout.default_classifier()
        if classifier is not None:
            info = classifier.info
            log.info("edgecam %s: device %s, %d camera(s), model %s (%s, %dpx, %d threads)", __version__,
                     layout.config.device_id, len(layout.cameras), info.name, info.precision, info.input_size,
                     layout.config.model.threads)
        log.info("%s", self.pipeline.loader.kernels.describe())
        for name, run in layout.cameras.items():
            regions = ", ".join(f"{r.name} {list(r.cfg.box)} ({r.cfg.trigger})" for r in run.regions)
            log.info("camera %s: %s; regions: %s", name, run.camera.source.describe(), regions)

    def stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        """From the SIGHUP handler: the main loop queues the reload, the handler only flags."""
        self._reload.set()

    def _wait_loop(self) -> None:
        started = time.monotonic()
        next_stats = started + self.config.stats.interval_s
        sources = self._sources_seen()
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
                log.info("SIGHUP: reloading the config file")
                self.controller.reload_in_background()
            if self.health.liveness(self.health.watchdog_stall_s())[0]:
                self.watchdog.ping()
            seen = self._sources_seen()
            if now >= next_stats:
                next_stats = now + self.config.stats.interval_s
                self._emit_stats()
                self.publisher.submit_state(self.status.state())  # at least every stats interval
            elif seen != sources:
                self.publisher.submit_state(self.status.state())  # a source connected or was lost
            sources = seen

    def _sources_seen(self) -> list[tuple[str, str]]:
        """Each camera's capture state (the state topic is republished when one changes)."""
        return [(name, run.camera.capture.state) for name, run in self.pipeline.layout.cameras.items()]

    def _sources_finished(self) -> bool:
        """Every camera is a non-looping file that has ended, and its last frame has left the pipeline."""
        cameras = [run.camera for run in self.pipeline.layout.cameras.values()]

        def drained(camera: Camera) -> bool:
            counters = camera.ring.counters()
            return camera.capture.state == "ended" and counters["pending"] == 0 and counters["held"] == 0

        return bool(cameras) and all(drained(c) for c in cameras) and self.publisher.queue_depth == 0

    def _shutdown(self) -> None:
        log.info("stopping")
        self.notifier.stopping()
        self.stop_event.set()
        cameras = [run.camera for run in self.pipeline.layout.cameras.values()]
        for camera in cameras:
            camera.ring.close()
        for extra in reversed(self._extras):
            extra.stop()
        for camera in cameras:
            camera.stop()
        self.inference.stop()
        self.collector.stop()
        self.controller.stop()
        self.publisher.stop()
        log.info("stopped: %s", format_stats_line(self.status.snapshot()))

    # ---------------------------------------------------------- thread hooks
    def _on_frame(self, frame: FrameResults) -> None:
        """Called on the inference thread while the frame is still held."""
        config = self.pipeline.layout.config
        states = {region.name: state.label for region, state in frame.changes}
        frame.run.hub.offer(frame.image, frame.results, states)
        if config.collect.enabled:
            self.collector.offer(frame.image, frame.run.regions, frame.results, frame.changes)
        for result in frame.results:
            self.status.inference_latency.add(result.inference_ms)
            self.publisher.submit(result)
        for region, state in frame.changes:
            payload = state.to_payload(config.device_id, region.camera, region.name)
            log.info("state: %s/%s %s -> %s (%.2f) since %s", region.camera, region.name, state.previous,
                     state.label, state.score, payload["since"])
            self.publisher.submit_region_state(payload)
        if not self._ready.is_set() and frame.results:
            self._ready.set()
            self.notifier.ready()
            top = frame.results[0].top[0]
            log.info("ready: first frame classified (%s %.2f)", top.label, top.score)

    def _on_fault(self, region: Region, event: str, detail: str) -> None:
        """On the inference thread: a region's model started failing, recovered, was rolled back
        or is trusted now. The state topic says so; a rollback is kept in the config file."""
        self.publisher.submit_state(self.status.state())
        if event == "rollback":
            self.controller.after_rollback(region.camera, region.name, region.model_path)

    def _on_published(self, result: Any) -> None:
        """On the publisher thread: the result left for the sinks (latency figures)."""
        self.status.on_published(result)

    def _changed(self, layout: Layout) -> None:
        """After every applied change: new publish settings, the state topic, HA discovery."""
        publish = layout.config.publish
        self.publisher.set_policy_factory(lambda: make_policy(publish))
        self.publisher.submit_state(self.status.state())
        self._describe(layout)

    def _describe(self, layout: Layout) -> None:
        """Tell the MQTT sink what runs (Home Assistant discovery: cameras, regions, labels)."""
        if self.mqtt_sink is not None:
            self.mqtt_sink.describe(layout.config, *region_models(layout))

    def _emit_stats(self) -> None:
        stats = self.status.snapshot()
        log.info("stats: %s", format_stats_line(stats))
        self.publisher.submit_stats(stats)
        lat = stats["latency_ms"]
        cameras = [run.camera for run in self.pipeline.layout.cameras.values()]
        up = sum(1 for camera in cameras if camera.connected)
        self.notifier.status(f"{stats['inference_fps']:.1f} fps, latency p50 {lat['p50']} ms, "
                             f"{up}/{len(cameras)} cameras up")


def _given_sources(config: Config, source: Optional[FrameSource],
                   sources: Optional[Mapping[str, FrameSource]]) -> dict[str, FrameSource]:
    """camera name -> the FrameSource the caller gave for it (``source`` is the first camera's)."""
    names = list(config.camera_configs())
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


def _persister(config_file: ConfigFile, pipeline: Pipeline) -> Callable[[str, str, str], None]:
    """Keeps an uploaded model across restarts: its path into the region's ``model:`` key."""
    def persist(camera: str, region: str, path: str) -> None:
        if not pipeline.layout.config.cameras:
            raise ConfigError("the config has no cameras: section to keep a region's model in "
                              "(move source: under cameras: NAME:)")
        config_file.edit({f"cameras.{camera}.regions.{region}.model": path})

    return persist
