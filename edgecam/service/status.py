"""What the daemon reports about itself: counters, the stats snapshot, the retained state.

Read-only: everything here reads the running layout (``pipeline.layout``, once
per call) and the threads' own counters, on whatever thread asks (the main
loop's stats, MQTT's state topic, the web app). It never changes what runs.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from edgecam import __version__
from edgecam.control.settings import current_settings
from edgecam.histogram import LatencyWindow
from edgecam.inference.layout import CameraRun, Layout
from edgecam.inference.pipeline import Pipeline
from edgecam.inference.thread import InferenceThread
from edgecam.publish.publisher import PublisherThread
from edgecam.publish.stdout import StdoutSink
from edgecam.regions.region import Region
from edgecam.result import Result
from edgecam.service.stats import StatsCollector

#: The MQTT sink's counters (None without MQTT).
SinkCounters = Optional[Callable[[], dict[str, Any]]]


class StatusReport:
    def __init__(self, pipeline: Pipeline, inference: InferenceThread, publisher: PublisherThread,
                 mqtt_counters: SinkCounters = None) -> None:
        self._pipeline = pipeline
        self._inference = inference
        self._publisher = publisher
        self._mqtt_counters = mqtt_counters
        self.latency = LatencyWindow()  # capture -> handed to the sinks, every result
        self.inference_latency = LatencyWindow()
        self.stats_collector = StatsCollector(self.counters, self.latency, self.inference_latency)
        #: Filled by the deployer: model file or region -> the last error deploying it.
        self.model_errors: Callable[[], dict[str, str]] = dict

    # -- hooks the daemon calls ---------------------------------------------------------
    def on_published(self, result: Result) -> None:
        """On the publisher thread: the result left for the sinks."""
        self.latency.add(result.total_ms)
        try:
            region = self._pipeline.layout.region(result.camera, result.region)
        except Exception:  # noqa: BLE001 - the region was removed meanwhile (a reload)
            return
        region.latency.add(result.total_ms)

    # -- counters and stats ---------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        layout = self._pipeline.layout
        mqtt = self._mqtt_counters() if self._mqtt_counters is not None else {}
        cameras = {name: self._camera_counters(run) for name, run in layout.cameras.items()}
        totals = {key: sum(c[key] for c in cameras.values())
                  for key in ("captured", "processed", "dropped", "pending", "skipped", "bad_frames")}
        publisher = self._publisher
        stdout_dropped = sum(sink.dropped for sink in publisher.sinks if isinstance(sink, StdoutSink))
        first = next(iter(layout.cameras.values()), None)
        outbox = mqtt.get("outbox") or {}
        return {
            "device": layout.config.device_id,
            **totals,
            "inference_errors": self._inference.errors,
            "published": publisher.published,
            "suppressed": publisher.suppressed,
            "publish_dropped": publisher.dropped + mqtt.get("dropped", 0) + stdout_dropped,
            "mqtt_dropped": mqtt.get("dropped", 0),  # of those handed to MQTT (the rest never were)
            "publish_expired": mqtt.get("expired", 0),
            "queue_depth": publisher.queue_depth + mqtt.get("queued", 0),
            "mqtt_connected": mqtt.get("connected") if self._mqtt_counters is not None else None,
            "outbox_pending": outbox.get("pending"), "outbox_evicted": outbox.get("evicted"),
            "outbox_durable": outbox.get("durable"),
            "source_state": first.camera.capture.state if first is not None else None,
            "paused": layout.all_paused,
            "cameras": cameras,
            "regions": {f"{r.camera}/{r.name}": _region_counters(r) for r in layout.regions()},
        }

    def _camera_counters(self, run: CameraRun) -> dict[str, Any]:
        camera = run.camera
        ring = camera.ring.counters()
        return {"captured": ring["captured"], "dropped": ring["dropped"], "pending": ring["pending"],
                "processed": self._inference.processed[camera.name], "skipped": self._inference.skipped[camera.name],
                "bad_frames": camera.capture.bad_frames, "state": camera.capture.state, "paused": run.paused}

    def snapshot(self) -> dict[str, Any]:
        """A new periodic snapshot (rates since the previous one): the main loop's stats."""
        return self.stats_collector.snapshot()

    def stats(self) -> dict[str, Any]:
        """The latest periodic snapshot, with the counters refreshed to this instant."""
        collector = self.stats_collector
        return {**(collector.latest or collector.snapshot()), **self.counters()}

    # -- the retained state ---------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        layout = self._pipeline.layout
        config = layout.config
        classifier = layout.default_classifier()
        first = next(iter(layout.cameras.values()), None)
        model = {} if classifier is None else {
            "name": classifier.info.name, "arch": classifier.info.arch, "precision": classifier.info.precision,
            "input_size": classifier.info.input_size, "trained": classifier.info.trained}
        return {
            "device": config.device_id,
            "version": __version__,
            "paused": layout.all_paused,
            "source": _source_state(first) if first is not None else None,  # the first camera's
            "model": model,
            "int8": self._pipeline.loader.kernels.as_dict(),
            "settings": current_settings(config.publish, config.inference),
            "model_errors": self.model_errors(),
            "cameras": {name: {**_source_state(run), "paused": run.paused,
                               "regions": {**{r.name: _region_state(layout, r) for r in run.regions},
                                           **_disabled_regions(layout, name)}}
                        for name, run in layout.cameras.items()},
        }


def _region_counters(region: Region) -> dict[str, Any]:
    return {"processed": region.processed, "skipped": region.skipped, "changes": region.changes,
            "errors": region.faults.errors, "latency_ms": region.latency.percentiles()}


def _disabled_regions(layout: Layout, camera: str) -> dict[str, Any]:
    """Regions left out at start-up because their model did not load: their error."""
    return {key.split("/")[1]: {"state": "error", "error": error, "model": None}
            for key, error in layout.errors.items() if key.split("/")[0] == camera}


def _source_state(run: CameraRun) -> dict[str, Any]:
    camera = run.camera
    capture = camera.capture
    return {"id": camera.source.source_id, "connected": capture.connected, "state": capture.state,
            "error": capture.last_error}


def _region_state(layout: Layout, region: Region) -> dict[str, Any]:
    state = region.state
    model = layout.classifier(region.model_path).info
    faults = region.faults
    return {"settings": region.settings(), "model": model.name, "labels": len(model.labels),
            "state": "error" if faults.failing is not None and faults.in_a_row >= 1 else
            (state.label if state is not None else None),
            "error": faults.failing, "errors": faults.errors, "rollbacks": faults.rollbacks,
            "probation": faults.probation if faults.on_probation else 0}
