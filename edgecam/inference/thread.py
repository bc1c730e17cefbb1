"""The inference thread: the newest frame of every camera -> its due regions -> Results.

One thread serves every camera (a Pi has few cores to spare). Each turn it:

1. waits until some camera's ring has a new frame (the rings call ``wake``);
2. visits the cameras in a rotating order and, for each one with a region due
   (its trigger), takes the newest frame it has not seen: never a backlog, so a
   result's capture age stays about one turn however far capture runs ahead;
3. cuts each due region's crop and asks its trigger whether it is worth it
   (motion), then runs the crops of all cameras through their models, one batch
   per model file (regions that share a file share its session);
4. smooths, debounces and hands one ``FrameResults`` per camera frame to the
   daemon while the frame is still held, then releases the frames.

Fairness: a turn takes at most one frame per camera, so a 30 FPS camera gets
no more turns than a 5 FPS one that has a new frame each time. Every turn
stamps ``heartbeat``; ``progress[camera]`` is stamped whenever a camera's frame
was handled (classified, skipped by its trigger, or nothing was due).

The thread owns what runs (``Pipeline``): before each turn it applies the
changes other threads asked for, then reads the running ``Layout`` once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from edgecam.buffer.ring import FrameView
from edgecam.errors import EdgecamError, ModelError
from edgecam.heartbeat import Heartbeat
from edgecam.inference.layout import CameraRun, Layout
from edgecam.inference.pipeline import Pipeline
from edgecam.inference.pool import model_key
from edgecam.regions.debounce import RegionState
from edgecam.regions.region import Region
from edgecam.result import Result

log = logging.getLogger(__name__)

#: Failed turns in a row (an error outside any one model) before the thread gives up (the
#: daemon then exits 1 and systemd restarts it); a single failure is logged, counted and skipped.
ERROR_LIMIT = 10
#: A failing region's model is logged once, then at most this often (with a count).
FAULT_LOG_EVERY_S = 60.0
WAIT_S = 0.1  # longest idle wait for a frame: the heartbeat's cadence when nothing arrives
# Crops per run of one model. Measured (edgecam/bench/cameras.py, ResNet-18 INT8 160): a batch
# saves only onnxruntime's fixed cost per run (~1 ms of ~4 ms per image), batch 8 is no faster
# per image than 4, and each image in a batch holds ~1 MB more: 12 crops kept 12 MB.
MAX_BATCH = 4


@dataclass
class FrameResults:
    """What one camera frame produced: handed to the daemon while ``image`` is valid."""

    run: CameraRun
    image: np.ndarray  # a view into the ring slot: copy what you keep
    results: list[Result] = field(default_factory=list)
    changes: list[tuple[Region, RegionState]] = field(default_factory=list)


@dataclass
class _Job:
    """One camera's frame this turn and the regions to classify on it."""

    run: CameraRun
    view: FrameView
    crops: list[tuple[Region, np.ndarray]]
    out: FrameResults

    @property
    def camera_name(self) -> str:
        return self.run.camera.name


class InferenceThread:
    def __init__(self, pipeline: Pipeline, emit: Callable[[FrameResults], None],
                 stop_event: threading.Event, device_id: str, wake: threading.Event, batch: bool = True,
                 on_fault: Callable[[Region, str, str], None] = lambda region, event, detail: None,
                 show: Callable[[CameraRun, np.ndarray], None] = lambda run, image: None) -> None:
        """``on_fault(region, event, detail)`` hears, on this thread, when a region's model starts
        failing ("failing"), recovers ("recovered"), is rolled back ("rollback") or passes its
        probation ("trusted"); ``show(run, image)`` gets the frames no region needed (the preview)."""
        self.pipeline = pipeline
        self._show = show
        self._on_fault = on_fault
        self._fault_logged: dict[tuple[str, str], float] = {}
        self.batch = batch  # crops due together share one run per model (False: one run each; benchmarks)
        self._emit = emit
        self._stop = stop_event
        self._wake = wake
        self._device_id = device_id
        self._thread: Optional[threading.Thread] = None
        self._order: deque[str] = deque()
        self._last_seq: dict[str, tuple[int, int]] = {}  # camera -> (id of its ring, last seq taken)
        self._last_turn = 0.0
        self.processed: dict[str, int] = defaultdict(int)  # frames classified, per camera
        self.skipped: dict[str, int] = defaultdict(int)  # frames no region needed (triggers, pause)
        self.progress: dict[str, float] = {}  # camera -> monotonic time its frames last got through
        self.last_result_mono: Optional[float] = None
        self.errors = 0
        self._errors_in_a_row = 0
        self.error: Optional[BaseException] = None
        self.heartbeat = Heartbeat("inference")

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.heartbeat.beat()
        self.pipeline.changes.attach_owner(self._wake.set)
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # noqa: BLE001 - reported to the daemon, which exits non-zero
            log.exception("inference thread crashed")
            self.error = err
            self._stop.set()
        finally:
            self.pipeline.changes.detach_owner()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.heartbeat.beat()
            self.pipeline.changes.run_pending()
            layout = self.pipeline.layout
            if self._throttle(layout):
                continue
            self._wake.wait(WAIT_S)
            self._wake.clear()
            self.pipeline.changes.run_pending()  # asked for while we waited: before any frame is taken
            layout = self.pipeline.layout
            jobs = self._collect(layout, time.monotonic())
            if not jobs:
                continue
            self._last_turn = time.monotonic()
            try:
                self._classify(layout, jobs)
                self._errors_in_a_row = 0
            except EdgecamError as err:
                self._failed(err)
                continue
            finally:
                for job in jobs:
                    job.run.camera.ring.release(job.view)
            self._order.rotate(-1)

    def _throttle(self, layout: Layout) -> bool:
        """Honour max_fps by waiting before taking frames, so they are fresh."""
        max_fps = layout.config.inference.max_fps
        if max_fps <= 0:
            return False
        remaining = self._last_turn + 1.0 / max_fps - time.monotonic()
        if remaining > 0:
            self._stop.wait(min(remaining, WAIT_S))
            return True
        return False

    def _failed(self, err: EdgecamError) -> None:
        """One turn could not be classified: log, count, go on; give up after ERROR_LIMIT in a row."""
        self.errors += 1
        self._errors_in_a_row += 1
        if self._errors_in_a_row == 1:
            log.warning("inference: frame skipped: %s", err)
        if self._errors_in_a_row >= ERROR_LIMIT:
            raise EdgecamError(f"{ERROR_LIMIT} frames in a row failed to classify; last: {err}")

    # -- one turn ----------------------------------------------------------------------
    def _visit_order(self, layout: Layout) -> list[str]:
        """The cameras in a rotating order (a turn starts with the next camera each time)."""
        if set(self._order) != set(layout.cameras):
            self._order = deque(layout.cameras)
        return list(self._order)

    def _collect(self, layout: Layout, now: float) -> list[_Job]:
        """This turn's jobs: the newest frame of each camera with a region that wants it. Every
        new frame is taken, wanted or not, so the preview shows each camera at its own rate
        and the ring's ``dropped`` counts only frames lost under load; a frame no region
        needed (paused, an interval not due, no motion) is counted in ``skipped``."""
        jobs = []
        rollback_after = layout.config.model.checks.rollback_after
        for name in self._visit_order(layout):
            run = layout.cameras[name]
            ring = run.camera.ring
            ring_id, last = self._last_seq.get(name, (id(ring), -1))
            view = ring.get_latest(after_seq=last if ring_id == id(ring) else -1, timeout=0)
            self.progress[name] = now
            if view is None:
                continue  # nothing new to do for this camera
            self._last_seq[name] = (id(ring), view.seq)
            due = [] if layout.is_paused(name) else [
                region for region in run.regions if region.trigger.due(now) and region.faults.due(now, rollback_after)]
            crops = self._wanted_crops(due, view.image, now) if due else []
            if not crops:
                self.skipped[name] += 1
                self._show(run, view.image)
                ring.release(view)
                continue
            jobs.append(_Job(run, view, crops, FrameResults(run, view.image)))
        return jobs

    @staticmethod
    def _wanted_crops(due: list[Region], image: np.ndarray, now: float) -> list[tuple[Region, np.ndarray]]:
        crops = []
        for region in due:
            crop = region.crop(image)
            if region.trigger.wants(crop, now):
                crops.append((region, crop))
            else:
                region.skipped += 1
        return crops

    def _classify(self, layout: Layout, jobs: list[_Job]) -> None:
        """One batch per model file over every camera's crops, then results per camera."""
        by_model: dict[str, list[tuple[_Job, Region, np.ndarray]]] = defaultdict(list)
        for job in jobs:
            for region, crop in job.crops:
                by_model[region.model_path].append((job, region, crop))
        for path, items in by_model.items():
            classifier = layout.classifier(path)
            size = MAX_BATCH if self.batch else 1
            groups = [items[i:i + size] for i in range(0, len(items), size)]
            for _, region, _ in items:
                region.use_model(classifier)
            for group in groups:
                start = time.monotonic()
                try:
                    probabilities = _checked(classifier, classifier.probabilities_batch([c for _, _, c in group]),
                                             len(group))
                except ModelError as err:
                    for _, region, _ in group:
                        self._region_failed(layout, region, str(err), start)
                    continue
                end = time.monotonic()
                for (job, region, crop), probs in zip(group, probabilities):
                    self._region_result(layout, job, region, crop, classifier, probs, start, end)
                    self._region_succeeded(region)
        for job in jobs:
            self.processed[job.camera_name] += 1
            self.progress[job.camera_name] = self.last_result_mono = time.monotonic()
            self._emit(job.out)

    def _region_result(self, layout: Layout, job: _Job, region: Region, crop: np.ndarray, classifier: Any,
                       probabilities: np.ndarray, start: float, end: float) -> None:
        smoothed = region.smooth(probabilities, layout.config.inference.smoothing)
        region.trigger.classified(crop, end)
        region.processed += 1
        top = tuple(classifier.top_k(smoothed, region.cfg.top_k))
        view, info = job.view, classifier.info
        height, width = view.image.shape[:2]
        result = Result(
            device=self._device_id, source=job.run.camera.source.source_id, seq=view.seq,
            captured_mono=view.captured_mono, captured_wall=view.captured_wall,
            inference_start=start, inference_end=end, top=top,
            model_name=info.name, model_precision=info.precision, model_input_size=info.input_size,
            frame_width=width, frame_height=height, camera=job.camera_name, region=region.name,
        )
        job.out.results.append(result)
        change = region.debouncer.update(top, view.captured_wall)
        if change is not None:
            region.changes += 1
            job.out.changes.append((region, change))

    # -- faults stay in their region -----------------------------------------------------
    def _region_failed(self, layout: Layout, region: Region, error: str, now: float) -> None:
        faults = region.faults
        was_failing = faults.failing is not None
        faults.failed(error, now)
        key = region.key
        if not was_failing or now - self._fault_logged.get(key, float("-inf")) >= FAULT_LOG_EVERY_S:
            log.warning("region %s/%s: its model failed on %d frame(s) in a row (%d in all): %s", region.camera,
                        region.name, faults.in_a_row, faults.errors, error)
            self._fault_logged[key] = now
        if not was_failing:
            self._on_fault(region, "failing", error)
        if faults.on_probation and faults.in_a_row >= layout.config.model.checks.rollback_after:
            self._roll_back(region, error)

    def _region_succeeded(self, region: Region) -> None:
        faults = region.faults
        was_failing = faults.failing is not None
        if faults.succeeded():  # the model it replaced is no longer kept for a rollback
            self._on_fault(region, "trusted", region.model_path)
        if was_failing:
            log.info("region %s/%s: its model works again", region.camera, region.name)
            self._on_fault(region, "recovered", region.model_path)

    def _roll_back(self, region: Region, error: str) -> None:
        """On this thread, between two batches: the region goes back to the model it had."""
        failed_model = region.model_path
        previous, loaded = region.faults.rolled_back()

        def change(layout: Layout) -> tuple[Layout, None]:
            region.retune(region.cfg.model_copy(update={"model": previous}))
            models = {**layout.models, model_key(previous): loaded}  # the same file reloaded: its old session
            return layout.with_models(models), None

        self.pipeline.update_here(change, "rollback", camera=region.camera, region=region.name, model=previous,
                                  failed=failed_model)
        log.error("region %s/%s: model %s failed on %d frames in a row; rolled back to %s (%s)", region.camera,
                  region.name, failed_model, region.faults.errors, previous, error)
        self._on_fault(region, "rollback", f"{failed_model} failed ({error}); back on {previous}")


def _checked(classifier: Any, probabilities: np.ndarray, count: int) -> np.ndarray:
    """A model's outputs as the rest of the pipeline needs them, or a ModelError."""
    expected = (count, classifier.info.num_classes)
    if probabilities.shape != expected:
        raise ModelError(f"{classifier.path.name}: outputs have shape {probabilities.shape}, expected {expected}")
    if not np.isfinite(probabilities).all():
        raise ModelError(f"{classifier.path.name}: outputs are not finite numbers (NaN or infinity)")
    return probabilities
