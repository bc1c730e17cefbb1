"""The control surface MQTT commands and the web app use (``DaemonControl``).

Every change to what runs goes through here and is applied by its one owner,
the inference thread (``Pipeline.update``), between two inference turns. Changes
are also serialized among themselves: one worker thread ("changes") takes them in
the order they were asked for and runs each whole (prepare off the inference
thread, apply, then start or stop cameras), so two changes never interleave and
the caller's reply always describes what runs afterwards. A change that fails
leaves everything as it was.

Reads (state, stats, samples, snapshots) never wait for changes.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import cv2
import numpy as np

from edgecam.config import Config
from edgecam.config.writer import ConfigFile
from edgecam.control.settings import current_settings, validate_region_update, validate_update
from edgecam.dataset.collector import Collector
from edgecam.dataset.store import INBOX, DatasetError
from edgecam.errors import ConfigError, EdgecamError, ModelError
from edgecam.inference.deploy import Deployer
from edgecam.inference.layout import Layout
from edgecam.inference.pipeline import Pipeline
from edgecam.inference.plan import Plan, region_key_path
from edgecam.logs import set_level
from edgecam.model.types import Label
from edgecam.preview.hub import PreviewHub
from edgecam.service.bursts import Bursts
from edgecam.service.health import Health
from edgecam.service.status import StatusReport
from edgecam.service.worker import SerialWorker

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a caller waits for its change (a reload loads model files: seconds each on a Pi).
CHANGE_TIMEOUT_S = 120.0
#: How long an upload's reply waits for the new model to prove itself on live frames.
PROBATION_WAIT_S = 15.0


class Controller:
    def __init__(self, pipeline: Pipeline, status: StatusReport, health: Health, collector: Collector,
                 deployer: Deployer, read_config: Callable[[], Config], config_file: Optional[ConfigFile] = None,
                 on_changed: Callable[[Layout], None] = lambda layout: None) -> None:
        """``read_config`` re-reads the configuration (the file plus command-line overrides);
        ``on_changed`` runs after every applied change (new publish settings, the state topic,
        Home Assistant discovery)."""
        self._pipeline = pipeline
        self._status = status
        self._health = health
        self._collector = collector
        self._deployer = deployer
        self._read_config = read_config
        self._config_file = config_file
        self._on_changed = on_changed
        self._worker = SerialWorker("changes")
        self._stopping = threading.Event()
        self._bursts = Bursts(lambda: self._pipeline.layout, collector, self._stopping)

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._stopping.set()
        self._worker.stop()

    def _serial(self, change: Callable[[], T], timeout_s: float = CHANGE_TIMEOUT_S) -> T:
        """Run ``change`` on the changes worker, after every change asked for before it."""
        future = self._submit(change)
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            raise EdgecamError(f"the change is taking longer than {timeout_s:.0f} s; it goes on, and the "
                               "state topic and the log will show it") from None

    def run_serially(self, work: Callable[[], T]) -> "Future[T]":
        """Queue ``work`` on the changes worker (the daemon's start-up: building what runs)."""
        return self._submit(work)

    def _submit(self, change: Callable[[], T]) -> "Future[T]":
        if not self._worker.running:
            future: Future[T] = Future()
            try:
                future.set_result(change())  # not started (tests, assembly): run here
            except BaseException as err:  # noqa: BLE001 - handed back through the future
                future.set_exception(err)
            return future
        return self._worker.submit(change)

    # -- pause / resume ---------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._pipeline.layout.all_paused

    def camera_names(self) -> list[str]:
        return list(self._pipeline.layout.cameras)

    def hubs(self) -> dict[str, PreviewHub]:
        return {name: run.hub for name, run in self._pipeline.layout.cameras.items()}

    def pause(self, camera: Optional[str] = None) -> bool:
        return self._serial(lambda: self._set_paused(camera, True))

    def resume(self, camera: Optional[str] = None) -> bool:
        return self._serial(lambda: self._set_paused(camera, False))

    def _set_paused(self, camera: Optional[str], paused: bool) -> bool:
        """Returns whether ``camera`` (None: every camera) is paused right after this change."""
        def change(layout: Layout) -> tuple[Layout, bool]:
            if camera is None:  # a global pause/resume overrides the per-camera flags
                runs = {name: replace(run, paused=False) for name, run in layout.cameras.items()}
                new = layout.next(paused=paused, cameras=runs)
                return new, new.all_paused
            run = layout.camera(camera)
            new = layout.next(cameras={**layout.cameras, camera: replace(run, paused=paused)})
            return new, new.is_paused(camera)

        now_paused = self._pipeline.update(change, "pause" if paused else "resume", camera=camera)
        log.info("%s%s", "paused" if paused else "resumed", f" camera {camera}" if camera else "")
        self._on_changed(self._pipeline.layout)
        return now_paused

    # -- settings ---------------------------------------------------------------------
    def apply_settings(self, settings: dict[str, Any], camera: Optional[str] = None,
                       region: Optional[str] = None) -> dict[str, Any]:
        return self._serial(lambda: self._apply_settings(dict(settings), camera, region))

    def _apply_settings(self, settings: dict[str, Any], camera: Optional[str], region: Optional[str]) -> dict[str, Any]:
        if camera is not None and region is not None:
            def change(layout: Layout) -> tuple[Layout, dict[str, Any]]:
                target = layout.region(camera, region)
                where = f"cameras.{camera}.regions.{region}"
                target.retune(validate_region_update(target.cfg, settings, where))  # raises before changing
                return layout.next(), target.settings()
        else:
            def change(layout: Layout) -> tuple[Layout, dict[str, Any]]:
                config = layout.config
                publish, inference = validate_update(config.publish, config.inference, settings)
                new = config.model_copy(update={"publish": publish, "inference": inference})
                return layout.next(config=new), current_settings(publish, inference)
        applied = self._pipeline.update(change, "set", camera=camera, region=region, settings=dict(settings))
        log.info("settings changed%s: %s", f" for {camera}/{region}" if region else "", applied)
        self._on_changed(self._pipeline.layout)
        return applied

    # -- the configuration --------------------------------------------------------------
    def reload(self) -> dict[str, Any]:
        """Re-read the config file and apply the difference (SIGHUP, MQTT and HTTP ``reload``)."""
        return self._serial(self._reload)

    def reload_in_background(self) -> None:
        """For the SIGHUP handler's main-loop side: queue a reload, log its outcome."""
        def run() -> None:
            try:
                self._reload()
            except EdgecamError:
                pass  # logged, and in the state topic's model_errors
            except Exception:  # noqa: BLE001 - a bug must not kill the changes worker
                log.exception("reload failed; nothing changed")

        self._submit(run)

    def _reload(self) -> dict[str, Any]:
        try:
            config = self._read_config()
        except ConfigError as err:
            self._failed("config", err)
            raise
        self._deployer.clear_errors("config")
        return self._apply_config(config)

    def _failed(self, what: str, err: EdgecamError) -> None:
        """A change refused: nothing changed; the state topic says why (``model_errors``)."""
        self._deployer.record_error(what, str(err))
        log.error("%s refused, nothing changed: %s", what, err)
        self._on_changed(self._pipeline.layout)

    def edit_config(self, edits: dict[str, Any]) -> dict[str, Any]:
        """Write ``edits`` (dotted key path -> value) into the config file, keeping its comments,
        and apply the result live. Nothing is written when the result does not validate; the
        previous file comes back when it cannot be applied."""
        return self._serial(lambda: self._edit_config(edits))

    def _edit_config(self, edits: dict[str, Any]) -> dict[str, Any]:
        if self._config_file is None:
            raise ConfigError("edgecam runs without a config file (--config): nothing to write to")
        text, _ = self._config_file.render(edits)  # validates the whole file; raises, writes nothing
        self._config_file.write(text)
        try:
            config = self._read_config()  # the file plus the command line's overrides
            reply = self._apply_config(config)
        except EdgecamError:
            self._config_file.restore_backup()
            raise
        return {**reply, "written": str(self._config_file.path)}

    def _apply_config(self, config: Config) -> dict[str, Any]:
        before = self._pipeline.layout
        try:
            plan = self._pipeline.plan(config)
        except (ModelError, ConfigError) as err:
            self._failed("reload", err)
            raise
        try:
            layout = self._pipeline.apply(plan)
        except BaseException:
            plan.discard()
            raise
        self._deployer.clear_errors("reload")
        self._after(plan, layout)
        reloaded = [Path(key).name for key in plan.models if key in before.models]
        return {"changes": plan.changes, "reloaded": reloaded, "needs_restart": plan.needs_restart,
                "cameras": list(layout.cameras)}

    def _after(self, plan: Plan, layout: Layout) -> None:
        """Outside the inference thread: start the cameras the plan built, stop the ones it retired."""
        for camera in plan.retired:
            camera.stop()
        for camera in plan.cameras.values():
            camera.start()
        set_level(layout.config.log_level)
        for line in plan.changes:
            log.info("reload: %s", line)
        for key in plan.needs_restart:
            log.warning("reload: %s changed: needs a restart (systemctl restart edgecam); the running "
                        "value stays until then", key)
        if not plan.changes and not plan.needs_restart:
            log.info("reload: nothing changed")
        self._on_changed(layout)

    # -- models -----------------------------------------------------------------------
    def upload_model(self, camera: str, region: str, data: bytes) -> dict[str, Any]:
        """Check, deploy, then watch the new model on live frames for a while: the reply
        says whether it proved itself or was rolled back (``outcome``)."""
        def deploy() -> dict[str, Any]:
            try:
                return self._deployer.upload(camera, region, data)
            finally:  # deployed or refused: the state topic shows the model, or the error
                self._on_changed(self._pipeline.layout)

        reply = self._serial(deploy)
        return {**reply, **self._probation_outcome(camera, region, reply["model"])}

    def _probation_outcome(self, camera: str, region: str, model: str) -> dict[str, Any]:
        """Waits (on the caller's thread) until the new model is trusted or rolled back."""
        deadline = time.monotonic() + PROBATION_WAIT_S
        while time.monotonic() < deadline:
            try:
                target = self._pipeline.layout.region(camera, region)
            except ConfigError:
                return {"outcome": "region removed meanwhile"}
            if target.model_path != model:
                return {"outcome": "rolled back", "rolled_back": True, "error": target.faults.failing,
                        "model_running": target.model_path}
            if not target.faults.on_probation:
                return {"outcome": "trusted", "rolled_back": False}
            time.sleep(0.05)
        left = self._pipeline.layout.region(camera, region).faults.probation
        return {"outcome": f"running, on probation ({left} more results before it is trusted)",
                "rolled_back": False}

    def after_rollback(self, camera: str, region: str, model: str) -> None:
        """The inference thread rolled a region back: keep that in the config file too (queued
        on the changes worker; the inference thread does no I/O)."""
        def persist() -> None:
            try:
                self._deployer.persist(camera, region, model)
            finally:
                self._on_changed(self._pipeline.layout)

        try:
            self._submit(persist)
        except EdgecamError:
            pass  # stopping

    def classify_image(self, bgr: np.ndarray) -> tuple[list[Label], float]:
        layout = self._pipeline.layout
        classifier = layout.default_classifier()
        if classifier is None:
            raise ModelError("no model runs")
        start = time.perf_counter()
        labels = classifier.classify(bgr, k=layout.config.model.top_k)
        return labels, (time.perf_counter() - start) * 1000.0

    # -- reading ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return self._status.state()

    def stats(self) -> dict[str, Any]:
        return self._status.stats()

    def health(self) -> tuple[bool, str]:
        return self._health.health()

    def int8_kernels(self) -> dict[str, Any]:
        return self._pipeline.loader.kernels.as_dict()

    def snapshot_jpeg(self, camera: Optional[str] = None) -> Optional[bytes]:
        layout = self._pipeline.layout
        if not layout.cameras:
            return None
        name = camera if camera is not None else next(iter(layout.cameras))
        return layout.camera(name).hub.latest_jpeg()

    # -- training samples ---------------------------------------------------------------
    def capture_sample(self, camera: str, region: str, label: Optional[str] = None) -> dict[str, Any]:
        """Save the region's crop of the camera's newest frame (to ``label``, else the inbox)."""
        sample = self._collector.capture(camera, region, self._latest_crop(camera, region), label)
        return {"sample": sample.id, "bytes": sample.size}

    def _latest_crop(self, camera: str, region: str) -> np.ndarray:
        run = self._pipeline.layout.camera(camera)
        target = run.region(region)
        latest = run.camera.ring.latest_copy()
        if latest is None:
            raise DatasetError(f"camera {camera} has no frame yet")
        return target.crop(latest[1])

    def crop_jpeg(self, camera: str, region: str) -> bytes:
        """The region's crop of the camera's newest frame, unannotated, as JPEG."""
        ok, data = cv2.imencode(".jpg", self._latest_crop(camera, region), [int(cv2.IMWRITE_JPEG_QUALITY), 85])
        if not ok:
            raise DatasetError("could not encode the crop as JPEG")
        return data.tobytes()

    def list_samples(self, camera: str, region: str) -> dict[str, Any]:
        layout = self._pipeline.layout
        target = layout.region(camera, region)
        store = self._collector.store(camera, region)
        samples = store.samples()
        labels = sorted({s.label for s in samples} - {INBOX})
        model_labels = layout.classifier(target.model_path).info.labels
        return {"camera": camera, "region": region, "labels": labels,
                "model_labels": list(model_labels) if len(model_labels) <= 50 else [],
                "samples": [{"id": s.id, "label": s.label, "bytes": s.size, "reason": s.reason, "time": s.time}
                            for s in samples], "burst": self._bursts.status(camera, region),
                "files": len(samples), "mb": round(sum(s.size for s in samples) / 2**20, 2),
                "max_files": store.max_files, "max_mb": round(store.max_bytes / 2**20, 2)}

    def label_samples(self, camera: str, region: str, sample_ids: list[str], label: str) -> int:
        self._pipeline.layout.region(camera, region)
        moved = self._collector.store(camera, region).move(sample_ids, label)
        log.info("collect: %d sample(s) of %s/%s labelled %s", moved, camera, region, label)
        return moved

    def delete_samples(self, camera: str, region: str, sample_ids: list[str]) -> int:
        self._pipeline.layout.region(camera, region)
        deleted = self._collector.store(camera, region).delete(sample_ids)
        log.info("collect: %d sample(s) of %s/%s deleted", deleted, camera, region)
        return deleted

    def sample_jpeg(self, camera: str, region: str, sample_id: str) -> bytes:
        self._pipeline.layout.region(camera, region)
        return self._collector.store(camera, region).path_of(sample_id).read_bytes()

    def burst(self, camera: str, region: str, count: int, seconds: float) -> dict[str, Any]:
        return self._bursts.start(camera, region, count, seconds)

    def suggest(self, camera: str, region: str, sample_ids: list[str]) -> dict[str, Any]:
        """The region's running model on samples: id -> {"label", "score"} (unreadable ones left out)."""
        layout = self._pipeline.layout
        classifier = layout.classifier(layout.region(camera, region).model_path)
        store = self._collector.store(camera, region)
        found: dict[str, Any] = {}
        for sample_id in sample_ids:
            image = cv2.imread(str(store.path_of(sample_id)), cv2.IMREAD_COLOR)
            if image is not None:
                top = classifier.classify(image, k=1)[0]
                found[sample_id] = {"label": top.label, "score": round(float(top.score), 4)}
        return {"model": classifier.info.name, "suggestions": found}

    def region_files(self, camera: str, region: str) -> dict[str, Any]:
        """Where a region's samples, models and config keys are (the web app's training)."""
        layout = self._pipeline.layout
        target = layout.region(camera, region)
        config = layout.config
        return {"dataset": str(Path(config.collect.dir) / camera / region), "model": target.model_path,
                "models": str(Path(config.model.path).parent), "backbone": config.model.path,
                "key": region_key_path(config, camera, region), "box": list(target.cfg.box),
                "trigger": target.cfg.trigger, "confirm": target.cfg.confirm}
