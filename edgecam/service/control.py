"""The daemon's side of DaemonControl (edgecam.control.protocol): what MQTT commands
and the web preview may do and read. Mixed into Daemon; uses its components."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgecam import __version__
from edgecam.control.settings import current_settings, validate_region_update, validate_update
from edgecam.dataset.store import INBOX, DatasetError
from edgecam.errors import ConfigError
from edgecam.model.types import Label
from edgecam.publish.policy import make_policy
from edgecam.publish.stdout import StdoutSink
from edgecam.regions.region import Region

if TYPE_CHECKING:
    from edgecam.service.daemon import Daemon

log = logging.getLogger(__name__)


class ControlMixin:
    # -- pause / resume -------------------------------------------------------------
    @property
    def paused(self: "Daemon") -> bool:
        return self.inference.paused or all(camera.paused for camera in self.cameras.values())

    def camera_names(self: "Daemon") -> list[str]:
        return list(self.cameras)

    def pause(self: "Daemon", camera: Optional[str] = None) -> None:
        self._set_paused(camera, True)

    def resume(self: "Daemon", camera: Optional[str] = None) -> None:
        self._set_paused(camera, False)

    def _set_paused(self: "Daemon", camera: Optional[str], paused: bool) -> None:
        if camera is None:
            self.inference.paused = paused
            for cam in self.cameras.values():
                cam.paused = False  # a global resume/pause overrides the per-camera flags
        else:
            self._camera(camera).paused = paused
        log.info("%s%s", "paused" if paused else "resumed", f" camera {camera}" if camera else "")
        self.publisher.submit_state(self.state())

    def _camera(self: "Daemon", name: str) -> Any:
        if name not in self.cameras:
            raise ConfigError(f"no camera named {name!r} (cameras: {', '.join(self.cameras)})")
        return self.cameras[name]

    def _region(self: "Daemon", camera: str, name: str) -> Region:
        self._camera(camera)
        for region in self.regions[camera]:
            if region.name == name:
                return region
        names = ", ".join(r.name for r in self.regions[camera])
        raise ConfigError(f"camera {camera} has no region named {name!r} (regions: {names})")

    # -- settings -------------------------------------------------------------------
    def apply_settings(self: "Daemon", settings: dict[str, Any], camera: Optional[str] = None,
                       region: Optional[str] = None) -> dict[str, Any]:
        with self._settings_lock:
            if camera is not None and region is not None:
                applied = self._apply_region_settings(settings, self._region(camera, region))
            else:
                applied = self._apply_global_settings(settings)
        log.info("settings changed%s: %s", f" for {camera}/{region}" if region else "", applied)
        self.publisher.submit_state(self.state())
        return applied

    def _apply_global_settings(self: "Daemon", settings: dict[str, Any]) -> dict[str, Any]:
        publish, inference = validate_update(self.config.publish, self.config.inference, settings)
        self.config = self.config.model_copy(update={"publish": publish, "inference": inference})
        self.publisher.set_policy_factory(lambda: make_policy(publish))
        self.inference.settings = self.inference.settings.replace(
            max_fps=inference.max_fps, smoothing=inference.smoothing)
        return current_settings(publish, inference)

    @staticmethod
    def _apply_region_settings(settings: dict[str, Any], region: Region) -> dict[str, Any]:
        where = f"cameras.{region.camera}.regions.{region.name}"
        region.retune(validate_region_update(region.cfg, settings, where))
        return region.settings()

    # -- reading --------------------------------------------------------------------
    def counters(self: "Daemon") -> dict[str, Any]:
        mqtt = self.mqtt_sink.counters() if self.mqtt_sink is not None else {}
        cameras = {name: self._camera_counters(name) for name in self.cameras}
        totals = {key: sum(c[key] for c in cameras.values())
                  for key in ("captured", "processed", "dropped", "pending", "skipped", "bad_frames")}
        stdout_dropped = sum(sink.dropped for sink in self.publisher.sinks if isinstance(sink, StdoutSink))
        return {
            "device": self.config.device_id,
            **totals,
            "inference_errors": self.inference.errors,
            "published": self.publisher.published,
            "suppressed": self.publisher.suppressed,
            "publish_dropped": self.publisher.dropped + mqtt.get("dropped", 0) + stdout_dropped,
            "publish_expired": mqtt.get("expired", 0),
            "queue_depth": self.publisher.queue_depth + mqtt.get("queued", 0),
            "mqtt_connected": mqtt.get("connected") if self.mqtt_sink is not None else None,
            **_outbox_counters(mqtt.get("outbox")),
            "source_state": next(iter(self.cameras.values())).capture.state,
            "paused": self.paused,
            "cameras": cameras,
            "regions": self._region_counters(),
        }

    def _camera_counters(self: "Daemon", name: str) -> dict[str, Any]:
        camera = self.cameras[name]
        ring = camera.ring.counters()
        return {"captured": ring["captured"], "dropped": ring["dropped"], "pending": ring["pending"],
                "processed": self.inference.processed[name], "skipped": self.inference.skipped[name],
                "bad_frames": camera.capture.bad_frames, "state": camera.capture.state, "paused": camera.paused}

    def _region_counters(self: "Daemon") -> dict[str, Any]:
        out = {}
        for regions in self.regions.values():
            for region in regions:
                latency = self.region_latency[region.key].percentiles()
                out[f"{region.camera}/{region.name}"] = {
                    "processed": region.processed, "skipped": region.skipped, "changes": region.changes,
                    "latency_ms": latency}
        return out

    def stats(self: "Daemon") -> dict[str, Any]:
        """The latest periodic snapshot, with the counters refreshed to this instant."""
        return {**(self.stats_collector.latest or self.stats_collector.snapshot()), **self.counters()}

    def state(self: "Daemon") -> dict[str, Any]:
        info = self.classifier.info
        first = next(iter(self.cameras.values()))
        return {
            "device": self.config.device_id,
            "version": __version__,
            "paused": self.paused,
            "source": self._source_state(first),  # the first camera (the single-source layout's one)
            "model": {"name": info.name, "arch": info.arch, "precision": info.precision,
                      "input_size": info.input_size, "trained": info.trained},
            "settings": current_settings(self.config.publish, self.config.inference),
            "model_errors": dict(self.deployer.errors),
            "cameras": {name: {**self._source_state(camera), "paused": camera.paused,
                               "regions": {r.name: self._region_state(r) for r in self.regions[name]}}
                        for name, camera in self.cameras.items()},
        }

    @staticmethod
    def _source_state(camera: Any) -> dict[str, Any]:
        capture = camera.capture
        return {"id": camera.source.source_id, "connected": capture.connected, "state": capture.state,
                "error": capture.last_error}

    def _region_state(self: "Daemon", region: Region) -> dict[str, Any]:
        state = region.state
        model = self.pool.get(region.model_path).info
        return {"settings": region.settings(), "model": model.name, "labels": len(model.labels),
                "state": state.label if state is not None else None}

    def snapshot_jpeg(self: "Daemon", camera: Optional[str] = None) -> Optional[bytes]:
        name = camera if camera is not None else next(iter(self.cameras))
        self._camera(name)
        return self.hubs[name].latest_jpeg()

    def health(self: "Daemon") -> tuple[bool, str]:
        return self.health_check.health()

    # -- training samples ---------------------------------------------------------------
    def capture_sample(self: "Daemon", camera: str, region: str, label: Optional[str] = None) -> dict[str, Any]:
        """Save the region's crop of the camera's newest frame (to ``label``, else the inbox)."""
        target = self._region(camera, region)
        latest = self.cameras[camera].ring.latest_copy()
        if latest is None:
            raise DatasetError(f"camera {camera} has no frame yet")
        sample = self.collector.capture(camera, region, target.crop(latest[1]), label)
        return {"sample": sample.id, "bytes": sample.size}

    def list_samples(self: "Daemon", camera: str, region: str) -> dict[str, Any]:
        self._region(camera, region)
        store = self.collector.store(camera, region)
        samples = store.samples()
        labels = sorted({s.label for s in samples} - {INBOX})
        return {"camera": camera, "region": region, "labels": labels, "model_labels": self._model_labels(camera, region),
                "samples": [{"id": s.id, "label": s.label, "bytes": s.size} for s in samples],
                "files": len(samples), "mb": round(sum(s.size for s in samples) / 2**20, 2),
                "max_files": store.max_files, "max_mb": round(store.max_bytes / 2**20, 2)}

    def _model_labels(self: "Daemon", camera: str, region: str) -> list[str]:
        labels = self.pool.get(self._region(camera, region).model_path).info.labels
        return list(labels) if len(labels) <= 50 else []

    def label_samples(self: "Daemon", camera: str, region: str, sample_ids: list[str], label: str) -> int:
        self._region(camera, region)
        moved = self.collector.store(camera, region).move(sample_ids, label)
        log.info("collect: %d sample(s) of %s/%s labelled %s", moved, camera, region, label)
        return moved

    def delete_samples(self: "Daemon", camera: str, region: str, sample_ids: list[str]) -> int:
        self._region(camera, region)
        deleted = self.collector.store(camera, region).delete(sample_ids)
        log.info("collect: %d sample(s) of %s/%s deleted", deleted, camera, region)
        return deleted

    def sample_jpeg(self: "Daemon", camera: str, region: str, sample_id: str) -> bytes:
        self._region(camera, region)
        return self.collector.store(camera, region).path_of(sample_id).read_bytes()

    # -- models -------------------------------------------------------------------------
    def reload_models(self: "Daemon") -> dict[str, Any]:
        return self.deployer.reload_changed()

    def upload_model(self: "Daemon", camera: str, region: str, data: bytes) -> dict[str, Any]:
        return self.deployer.upload(camera, region, data)

    def classify_image(self: "Daemon", bgr: np.ndarray) -> tuple[list[Label], float]:
        start = time.perf_counter()
        labels = self.classifier.classify(bgr, k=self.config.model.top_k)
        return labels, (time.perf_counter() - start) * 1000.0


def _outbox_counters(outbox: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The MQTT outbox's figures, flat (stats line, /metrics); None without MQTT."""
    outbox = outbox or {}
    return {"outbox_pending": outbox.get("pending"), "outbox_evicted": outbox.get("evicted"),
            "outbox_durable": outbox.get("durable")}
