"""New models without a restart: SIGHUP / MQTT ``reload`` and an HTTP upload for one region.

A new model is loaded and warmed on the side (Classifier runs one inference when
it loads), then swapped in: the inference thread looks each region's classifier
up in the ModelPool every turn, so the swap lands between two frames and results
never stop. On any error the old model keeps running; the error is logged,
returned to the caller (cmd/response, the HTTP reply) and kept in the state
topic (``model_errors``). After a swap the state topic and Home Assistant
discovery are published again, and each region on the new model starts its
smoothing and debounced state afresh (its labels may have changed).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecam.errors import ModelError
from edgecam.model.classifier import Classifier
from edgecam.inference.pool import model_key

if TYPE_CHECKING:
    from edgecam.service.daemon import Daemon

log = logging.getLogger(__name__)


class Deployer:
    def __init__(self, daemon: "Daemon") -> None:
        self._daemon = daemon
        self.errors: dict[str, str] = {}  # model file -> the last error loading it

    def reload_changed(self) -> dict[str, Any]:
        """Reload every model file that changed on disk since it was loaded."""
        pool = self._daemon.pool
        reloaded, unchanged = [], []
        for path, _old in pool.items():
            if not pool.changed_on_disk(path):
                unchanged.append(Path(path).name)
                continue
            try:
                self._swap(path, self._load(path))
                reloaded.append(Path(path).name)
            except ModelError as err:
                self._failed(path, err)
        if reloaded:
            self._announce()
        return {"reloaded": reloaded, "unchanged": unchanged,
                "errors": {Path(p).name: e for p, e in self.errors.items()}}

    def upload(self, camera: str, region_name: str, data: bytes) -> dict[str, Any]:
        """Deploy ``data`` (an ONNX file) for one region. A region with a model file of its
        own gets that file replaced (kept across restarts; the old one stays as .bak);
        a region on a shared file gets models/<camera>_<region>.onnx (the reply says how
        to keep it after a restart)."""
        daemon = self._daemon
        region = daemon._region(camera, region_name)
        key = model_key(region.model_path)
        sharing = [r for rs in daemon.regions.values() for r in rs if model_key(r.model_path) == key]
        own = key != model_key(daemon.config.model.path) and len(sharing) == 1
        target = Path(region.model_path) if own else Path(daemon.config.model.path).parent / f"{camera}_{region_name}.onnx"
        staged = target.with_name(f".{target.name}.upload-{os.getpid()}-{time.monotonic_ns()}")
        try:
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(data)
            classifier = self._load(str(staged))  # validated and warmed before anything changes
        except OSError as err:
            staged.unlink(missing_ok=True)
            raise ModelError(f"cannot store the uploaded model in {staged.parent}: {err.strerror or err}") from None
        except ModelError as err:
            staged.unlink(missing_ok=True)
            self._failed(f"{camera}/{region_name} upload", err)
            raise ModelError(f"uploaded model refused, {region.model_path} keeps running: {err}") from None
        if target.exists():
            os.replace(target, target.with_name(target.name + ".bak"))
        os.replace(staged, target)
        classifier.path = target
        if own:
            self._swap(str(target), classifier)
        else:
            daemon.pool.adopt(str(target), classifier)
            region.retune(region.cfg.model_copy(update={"model": str(target)}))
        info = classifier.info
        log.info("model: %s/%s now runs %s (%d labels) from %s", camera, region_name, info.name,
                 len(info.labels), target)
        self._announce()
        reply = {"camera": camera, "region": region_name, "model": str(target), "name": info.name,
                 "labels": list(info.labels)[:50]}
        if not own:
            reply["persist"] = f"add 'model: {target}' to cameras.{camera}.regions.{region_name} in the config"
        return reply

    # -- internals --------------------------------------------------------------------------
    def _load(self, path: str) -> Classifier:
        return Classifier(path, threads=self._daemon.config.model.threads)

    def _swap(self, path: str, classifier: Classifier) -> None:
        old = self._daemon.pool.replace(path, classifier)
        self.errors.pop(path, None)
        log.info("model: reloaded %s: %s -> %s (%d labels)", Path(path).name, old.info.name,
                 classifier.info.name, len(classifier.info.labels))

    def _failed(self, what: str, err: Exception) -> None:
        self.errors[what] = str(err)
        log.error("model: %s not deployed, the running model stays: %s", what, err)
        self._daemon.publisher.submit_state(self._daemon.state())

    def _announce(self) -> None:
        daemon = self._daemon
        daemon.classifier = daemon._default_classifier()
        daemon.publisher.submit_state(daemon.state())
        if daemon.mqtt_sink is not None:
            daemon.mqtt_sink.refresh()
