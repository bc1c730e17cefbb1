"""A new model for one region without a restart: the web app's upload.

The upload is written under a name of its own, ``<models>/uploads/<camera>/<region>/
<time>-<sha256>.onnx`` (never a file another camera or region uses: the old
``<camera>_<region>.onnx`` names collided, and an upload "for garage/door" could
replace the shared default model), loaded and warmed off the inference thread,
then swapped in between two turns. The previous file stays where it was, so a
deploy can be rolled back. On any error the running model stays; the error is
returned to the caller and kept for the state topic (``errors``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from edgecam.errors import ModelError
from edgecam.inference.layout import Layout
from edgecam.inference.pipeline import Pipeline
from edgecam.inference.plan import region_key_path
from edgecam.inference.pool import LoadedModel, model_key

log = logging.getLogger(__name__)

#: Persists a region's new model file in the config file: (camera, region, path) -> None, or
#: raises EdgecamError. None when there is no config file to write to.
Persist = Optional[Callable[[str, str, str], None]]


class Deployer:
    def __init__(self, pipeline: Pipeline, persist: Persist = None) -> None:
        self._pipeline = pipeline
        self._persist = persist
        self._errors: dict[str, str] = {}  # model file or "camera/region upload" -> the last error
        self._errors_lock = threading.Lock()  # guards _errors (change worker vs state readers)

    def errors(self) -> dict[str, str]:
        with self._errors_lock:
            return dict(self._errors)

    def record_error(self, what: str, error: str) -> None:
        with self._errors_lock:
            self._errors[what] = error

    def clear_errors(self, *whats: str) -> None:
        with self._errors_lock:
            for what in whats:
                self._errors.pop(what, None)

    def upload(self, camera: str, region_name: str, data: bytes) -> dict[str, Any]:
        """Deploy ``data`` (an ONNX file) for one region. Raises ConfigError (no such region)
        or ModelError (the file does not load: the running model stays)."""
        layout = self._pipeline.layout
        region = layout.region(camera, region_name)
        what = f"{camera}/{region_name} upload"
        path = self._store(layout, camera, region_name, data)
        where = f"{region_key_path(layout.config, camera, region_name)}.model (upload)"
        try:
            loaded = self._pipeline.loader.load(str(path), where)
        except ModelError as err:
            path.unlink(missing_ok=True)
            self.record_error(what, str(err))
            log.error("model: %s refused, %s keeps running: %s", what, region.model_path, err)
            raise ModelError(f"uploaded model refused, {region.model_path} keeps running: {err}") from None
        previous = self._pipeline.update(lambda running: _use_model(running, camera, region_name, loaded), "upload",
                                         camera=camera, region=region_name, model=str(path))
        self.clear_errors(what)
        info = loaded.classifier.info
        log.info("model: %s/%s now runs %s (%d labels) from %s (was %s)", camera, region_name, info.name,
                 len(info.labels), path, previous)
        reply: dict[str, Any] = {"camera": camera, "region": region_name, "model": str(path), "previous": previous,
                                 "name": info.name, "labels": list(info.labels)[:50]}
        reply.update(self._persisted(camera, region_name, str(path)))
        return reply

    def _store(self, layout: Layout, camera: str, region: str, data: bytes) -> Path:
        folder = Path(layout.config.model.path).parent / "uploads" / camera / region
        digest = hashlib.sha256(data).hexdigest()[:16]
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{digest}.onnx"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(path, "xb") as handle:  # never over another file
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except FileExistsError:
            return path  # the same bytes uploaded twice within a second: the file is that model
        except OSError as err:
            path.unlink(missing_ok=True)
            raise ModelError(f"cannot store the uploaded model in {folder}: {err.strerror or err}") from None
        return path

    def persist(self, camera: str, region: str, path: str) -> None:
        """Keep ``path`` as the region's model in the config file, when there is one."""
        if self._persist is not None:
            self._persist(camera, region, path)

    def _persisted(self, camera: str, region: str, path: str) -> dict[str, Any]:
        if self._persist is None:
            return {"persisted": False,
                    "persist": f"add 'model: {path}' to cameras.{camera}.regions.{region} in the config"}
        try:
            self._persist(camera, region, path)
        except Exception as err:  # noqa: BLE001 - the model runs; the reply says it is not kept
            log.warning("model: %s/%s runs %s, but the config file was not updated: %s", camera, region, path, err)
            return {"persisted": False, "persist_error": str(err)}
        return {"persisted": True}


def _use_model(layout: Layout, camera: str, region_name: str, loaded: LoadedModel) -> tuple[Layout, str]:
    """On the owner thread: the region runs ``loaded`` from now on; returns its previous model file."""
    region = layout.region(camera, region_name)
    previous = region.model_path
    region.faults.start_probation(previous, layout.models[model_key(previous)])
    region.retune(region.cfg.model_copy(update={"model": str(loaded.classifier.path)}))
    return layout.with_models({**layout.models, model_key(loaded.classifier.path): loaded}), previous
