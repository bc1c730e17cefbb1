"""The collector thread: which region crops become training samples, written off the hot path.

The inference thread calls ``offer()`` with each frame's results while the frame is
held. That costs a few comparisons; only a crop worth keeping is copied and queued:
  - the top-1 score is below ``low_score`` (the model is unsure: the frames to label),
  - the region's state just changed (``on_state_change``),
  - nothing was saved for the region for ``every_s`` (spread-out times),
at most once per ``min_interval_s`` per region. The thread then writes it with the
region's RegionStore, which drops crops too similar to what the region already has.
A full disk or a read-only folder is one clear log line (repeated at most every
10 minutes) and the daemon keeps classifying.

``capture()`` saves one crop on request (an MQTT command, the web page), with an
optional label: at most once per ``capture_interval_s`` per region (more are
refused with CaptureRateLimited, and counted), and written by this thread too, so
a slow disk or a big region never holds up the caller's thread for long; the
caller waits for the answer, at most CAPTURE_WAIT_S.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecam.config import CollectConfig
from edgecam.dataset.store import BURST, DatasetError, RegionStore, Sample, check_label
from edgecam.heartbeat import Heartbeat
from edgecam.regions.debounce import RegionState
from edgecam.regions.region import Region
from edgecam.result import Result

log = logging.getLogger(__name__)

QUEUE_SIZE = 16  # automatic crops waiting for the thread; more are dropped (counted)
CAPTURE_QUEUE = 4  # captures waiting for the thread; more are refused
CAPTURE_WAIT_S = 10.0  # how long capture() waits for the thread's answer
ERROR_LOG_EVERY_S = 600.0


class CaptureRateLimited(DatasetError):
    """A capture came sooner than ``collect.capture_interval_s`` after the region's last one."""


@dataclass
class _Auto:
    key: tuple[str, str]
    crop: np.ndarray
    reason: str
    on_saved: Callable[[Sample | None], None] | None = None  # a burst counts what it kept


@dataclass
class _Capture:
    key: tuple[str, str]
    crop: np.ndarray
    label: str | None
    done: Future[Sample] = field(default_factory=Future)


_Job = _Auto | _Capture


class Collector:
    def __init__(self, cfg: CollectConfig, stop_event: threading.Event) -> None:
        self.cfg = cfg
        self.root = Path(cfg.dir)
        self._stores: dict[tuple[str, str], RegionStore] = {}  # made on first use: regions come and go
        self._stores_lock = threading.Lock()  # guards _stores (inference, collector, MQTT and web threads)
        self._stop = stop_event
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._auto_room = threading.Semaphore(QUEUE_SIZE)  # bounds the automatic jobs in the queue
        self._capture_room = threading.Semaphore(CAPTURE_QUEUE)  # ... and the captures
        self._capture_lock = threading.Lock()  # guards _last_capture (callers on several threads)
        self._last_capture: dict[tuple[str, str], float] = {}
        self._last_saved: dict[tuple[str, str], float] = {}
        self._last_error: tuple[str, float] = ("", float("-inf"))
        self._thread: threading.Thread | None = None
        self.heartbeat = Heartbeat("collector")
        self.saved = 0
        self.not_new = 0  # too similar to a kept sample
        self.dropped = 0  # queue full, or the disk refused
        self.failed = 0
        self.captured = 0
        self.rate_limited = 0  # captures refused for coming too soon

    def start(self) -> None:
        self.heartbeat.beat()
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- called on the inference thread ---------------------------------------------------
    def offer(self, image: np.ndarray, regions: Iterable[Region], results: list[Result],
              changes: list[tuple[Region, RegionState]]) -> None:
        now = time.monotonic()
        by_name = {region.name: region for region in regions}
        changed = {region.name for region, _ in changes}
        for result in results:
            key = (result.camera, result.region)
            reason = self._reason(key, result, result.region in changed, now)
            if reason is None:
                continue
            if not self._auto_room.acquire(blocking=False):
                self.dropped += 1
                continue
            self._queue.put(_Auto(key, by_name[result.region].crop(image).copy(), reason))
            self._last_saved[key] = now

    def _reason(self, key: tuple[str, str], result: Result, changed: bool, now: float) -> str | None:
        cfg = self.cfg
        last = self._last_saved.get(key, float("-inf"))
        if now - last < cfg.min_interval_s:
            return None
        if changed and cfg.on_state_change:
            return "state-change"
        if result.top and result.top[0].score < cfg.low_score:
            return "low-score"
        if cfg.every_s > 0 and now - last >= cfg.every_s:
            return "periodic"
        return None

    # -- explicit captures (MQTT command worker, web preview) -----------------------------
    def capture(self, camera: str, region: str, crop: np.ndarray, label: str | None) -> Sample:
        """Save ``crop`` on request, on the collector's thread. Raises CaptureRateLimited when
        the region had a capture less than ``capture_interval_s`` ago, DatasetError otherwise."""
        key = (camera, region)
        self.store(camera, region)
        if label is not None:
            check_label(label)
        if self._thread is None or not self._thread.is_alive():
            raise DatasetError("the sample collector is not running")
        self._admit(key)
        if not self._capture_room.acquire(blocking=False):
            raise DatasetError(f"{CAPTURE_QUEUE} captures are already waiting to be saved; try again later")
        job = _Capture(key, crop, label)
        self._queue.put(job)
        if not self._thread.is_alive():  # it stopped just now: answer instead of waiting
            self._refuse_waiting()
        try:
            sample = job.done.result(timeout=CAPTURE_WAIT_S)
        except FutureTimeout:
            raise DatasetError(f"saving the sample took longer than {CAPTURE_WAIT_S:g} s (a slow disk?); "
                               "it is saved when the disk allows") from None
        log.info("collect: saved %s/%s/%s on request", camera, region, sample.id)
        return sample

    def add_burst(self, camera: str, region: str, crop: np.ndarray,
                  on_saved: Callable[[Sample | None], None], wait_s: float = 1.0) -> bool:
        """Queue one crop of a burst capture (edgecam.service.bursts): saved to the inbox like an
        automatic sample, so the perceptual hash keeps only crops unlike the region's others
        (``on_saved`` gets the sample, or None when it was too similar). Waits up to ``wait_s``
        for room in the queue; False when there was none (counted as dropped)."""
        self.store(camera, region)
        if not self._auto_room.acquire(timeout=wait_s):
            self.dropped += 1
            return False
        self._queue.put(_Auto((camera, region), crop, BURST, on_saved))
        return True

    def _admit(self, key: tuple[str, str]) -> None:
        interval = self.cfg.capture_interval_s
        now = time.monotonic()
        with self._capture_lock:
            last = self._last_capture.get(key, float("-inf"))
            if now - last < interval:
                self.rate_limited += 1
                raise CaptureRateLimited(f"captures of {key[0]}/{key[1]} are limited to one per {interval:g} s "
                                         "(collect.capture_interval_s)", "rate limited")
            self._last_capture[key] = now

    def store(self, camera: str, region: str) -> RegionStore:
        """The region's store (the caller checked that the region runs)."""
        with self._stores_lock:
            store = self._stores.get((camera, region))
            if store is None:
                cfg = self.cfg
                store = RegionStore(self.root / camera / region, cfg.max_files, cfg.max_mb, cfg.min_distance,
                                    cfg.jpeg_quality, cfg.max_captures)
                self._stores[(camera, region)] = store
            return store

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat.beat()
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(job, _Capture):
                self._capture_room.release()
                self._save_capture(job)
            else:
                self._auto_room.release()
                sample = self._save(job.key, job.crop, job.reason)
                if job.on_saved is not None:
                    job.on_saved(sample)
        self._refuse_waiting()

    def _save_capture(self, job: _Capture) -> None:
        try:
            sample = self.store(*job.key).capture(job.crop, job.label)
        except DatasetError as err:
            job.done.set_exception(err)
            return
        except Exception as err:
            log.exception("collect: capturing a sample of %s/%s failed", *job.key)
            job.done.set_exception(DatasetError(f"internal error: {type(err).__name__}: {err}"))
            return
        self.captured += 1
        job.done.set_result(sample)

    def _refuse_waiting(self) -> None:
        """Stopping: captures still queued get an answer instead of a timeout."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(job, _Capture):
                job.done.set_exception(DatasetError("edgecam is stopping; the sample was not saved"))

    def _save(self, key: tuple[str, str], crop: np.ndarray, reason: str) -> Sample | None:
        try:
            sample = self.store(*key).add(crop, reason)
        except DatasetError as err:
            self.failed += 1
            self._log_error(str(err), err.reason)
            return None
        except Exception:  # a bug: keep the traceback, keep collecting
            self.failed += 1
            log.exception("collect: saving a sample of %s/%s failed", *key)
            return None
        if sample is None:
            self.not_new += 1
        else:
            self.saved += 1
            log.debug("collect: %s/%s %s (%s)", key[0], key[1], sample.id, reason)
        return sample

    def _log_error(self, message: str, reason: str) -> None:
        """One line per kind of failure (the same full disk for every region is one line)."""
        last_reason, last_at = self._last_error
        now = time.monotonic()
        if reason != last_reason or now - last_at >= ERROR_LOG_EVERY_S:
            log.warning("collect: %s; samples are not saved, classification goes on", message)
            self._last_error = (reason, now)

    def counters(self) -> dict[str, int]:
        return {"saved": self.saved, "not_new": self.not_new, "dropped": self.dropped, "failed": self.failed,
                "captured": self.captured, "rate_limited": self.rate_limited}
