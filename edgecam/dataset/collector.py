"""The collector thread: which region crops become training samples, written off the hot path.

The inference thread calls ``offer()`` with each frame's results while the frame is
held. That costs a few comparisons; only a crop worth keeping is copied and queued:
  - the top-1 score is below ``low_score`` (the model is unsure: the frames to label),
  - the region's state just changed (``on_state_change``),
  - nothing was saved for the region for ``every_s`` (spread-out times),
at most once per ``min_interval_s`` per region. The thread then writes it with the
region's RegionStore, which drops crops too similar to what the region already has.
A full disk or a read-only folder is one clear log line (repeated at most every
10 minutes) and the daemon keeps classifying. ``capture()`` saves one crop at once,
for a command or the web page, with an optional label.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from edgecam.config import CollectConfig
from edgecam.dataset.store import DatasetError, RegionStore, Sample
from edgecam.heartbeat import Heartbeat
from edgecam.regions.debounce import RegionState
from edgecam.regions.region import Region
from edgecam.result import Result

log = logging.getLogger(__name__)

QUEUE_SIZE = 16
ERROR_LOG_EVERY_S = 600.0


class Collector:
    def __init__(self, cfg: CollectConfig, stop_event: threading.Event) -> None:
        self.cfg = cfg
        self.root = Path(cfg.dir)
        self._stores: dict[tuple[str, str], RegionStore] = {}  # made on first use: regions come and go
        self._stores_lock = threading.Lock()  # guards _stores (inference, collector, MQTT and web threads)
        self._stop = stop_event
        self._queue: queue.Queue[tuple[tuple[str, str], np.ndarray, str]] = queue.Queue(QUEUE_SIZE)
        self._last_saved: dict[tuple[str, str], float] = {}
        self._last_error: tuple[str, float] = ("", float("-inf"))
        self._thread: Optional[threading.Thread] = None
        self.heartbeat = Heartbeat("collector")
        self.saved = 0
        self.not_new = 0  # too similar to a kept sample
        self.dropped = 0  # queue full, or the disk refused
        self.failed = 0

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
            try:
                self._queue.put_nowait((key, by_name[result.region].crop(image).copy(), reason))
                self._last_saved[key] = now
            except queue.Full:
                self.dropped += 1

    def _reason(self, key: tuple[str, str], result: Result, changed: bool, now: float) -> Optional[str]:
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

    # -- explicit captures (MQTT worker, web preview) ---------------------------------------
    def capture(self, camera: str, region: str, crop: np.ndarray, label: Optional[str]) -> Sample:
        store = self.store(camera, region)
        sample = store.add(crop, "capture", label, force=True)
        assert sample is not None
        self.saved += 1
        log.info("collect: saved %s/%s/%s on request", camera, region, sample.id)
        return sample

    def store(self, camera: str, region: str) -> RegionStore:
        """The region's store (the caller checked that the region runs)."""
        with self._stores_lock:
            store = self._stores.get((camera, region))
            if store is None:
                cfg = self.cfg
                store = RegionStore(self.root / camera / region, cfg.max_files, cfg.max_mb, cfg.min_distance,
                                    cfg.jpeg_quality)
                self._stores[(camera, region)] = store
            return store

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat.beat()
            try:
                key, crop, reason = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._save(key, crop, reason)

    def _save(self, key: tuple[str, str], crop: np.ndarray, reason: str) -> None:
        try:
            sample = self.store(*key).add(crop, reason)
        except DatasetError as err:
            self.failed += 1
            self._log_error(str(err), err.reason)
            return
        except Exception:  # a bug: keep the traceback, keep collecting
            self.failed += 1
            log.exception("collect: saving a sample of %s/%s failed", *key)
            return
        if sample is None:
            self.not_new += 1
        else:
            self.saved += 1
            log.debug("collect: %s/%s %s (%s)", key[0], key[1], sample.id, reason)

    def _log_error(self, message: str, reason: str) -> None:
        """One line per kind of failure (the same full disk for every region is one line)."""
        last_reason, last_at = self._last_error
        now = time.monotonic()
        if reason != last_reason or now - last_at >= ERROR_LOG_EVERY_S:
            log.warning("collect: %s; samples are not saved, classification goes on", message)
            self._last_error = (reason, now)

    def counters(self) -> dict[str, int]:
        return {"saved": self.saved, "not_new": self.not_new, "dropped": self.dropped, "failed": self.failed}
