"""Burst captures: N crops of one region over M seconds, for the web app's "collect" step.

A burst runs on a thread of its own (the caller gets its answer at once and polls
``status``). Every ``seconds / count`` it copies the camera's newest frame (a frame it
already took is skipped), crops the region and hands the crop to the collector, which
keeps it only when the perceptual hash says it is unlike the region's other samples
(``collect.min_distance``), as for automatic samples; kept ones carry the reason
``burst`` in their name. One burst per region at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from edgecam.dataset.collector import Collector
from edgecam.dataset.store import DatasetError, Sample
from edgecam.errors import ConfigError
from edgecam.inference.layout import Layout

log = logging.getLogger(__name__)

MAX_COUNT = 200
MAX_SECONDS = 600.0
SAVE_WAIT_S = 5.0  # how long a burst waits for the collector to save its last crops


@dataclass
class Burst:
    camera: str
    region: str
    count: int
    seconds: float
    taken: int = 0  # crops handed to the collector
    kept: int = 0  # saved (unlike what the region had)
    similar: int = 0  # not saved: too close to a sample the region has
    running: bool = True
    error: str = ""
    started: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def saved(self, sample: Sample | None) -> None:
        with self._lock:
            if sample is None:
                self.similar += 1
            else:
                self.kept += 1

    def payload(self) -> dict[str, Any]:
        with self._lock:
            return {"camera": self.camera, "region": self.region, "count": self.count, "seconds": self.seconds,
                    "taken": self.taken, "kept": self.kept, "similar": self.similar, "running": self.running,
                    "error": self.error, "started": self.started}


class Bursts:
    def __init__(self, layout: Callable[[], Layout], collector: Collector, stop: threading.Event) -> None:
        self._layout = layout
        self._collector = collector
        self._stop = stop
        self._bursts: dict[tuple[str, str], Burst] = {}
        self._lock = threading.Lock()

    def start(self, camera: str, region: str, count: int, seconds: float) -> dict[str, Any]:
        """Start a burst; raises ConfigError (no such region, bad numbers) or DatasetError
        (one is already running for the region, or the collector is off)."""
        self._layout().region(camera, region)  # raises for an unknown name
        if not 1 <= count <= MAX_COUNT or not 0 <= seconds <= MAX_SECONDS:
            raise ConfigError(f"a burst takes 1 to {MAX_COUNT} crops over 0 to {MAX_SECONDS:g} s")
        with self._lock:
            running = self._bursts.get((camera, region))
            if running is not None and running.running:
                raise DatasetError(f"a burst of {camera}/{region} is already running")
            burst = Burst(camera, region, count, float(seconds))
            self._bursts[(camera, region)] = burst
        threading.Thread(target=self._run, args=(burst,), name=f"burst-{camera}-{region}", daemon=True).start()
        log.info("collect: burst of %d crops over %g s for %s/%s", count, seconds, camera, region)
        return burst.payload()

    def status(self, camera: str, region: str) -> dict[str, Any] | None:
        with self._lock:
            burst = self._bursts.get((camera, region))
        return burst.payload() if burst is not None else None

    def _run(self, burst: Burst) -> None:
        step = burst.seconds / burst.count
        next_at, last_seq = time.monotonic(), -1
        try:
            while burst.taken < burst.count and not self._stop.is_set():
                wait = next_at - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                run = self._layout().camera(burst.camera)
                latest = run.camera.ring.latest_copy()
                if latest is None or latest[0] == last_seq:  # no new frame yet: look again shortly
                    next_at = time.monotonic() + min(0.05, step or 0.05)
                    continue
                last_seq = latest[0]
                crop = run.region(burst.region).crop(latest[1]).copy()
                if self._collector.add_burst(burst.camera, burst.region, crop, burst.saved):
                    with burst._lock:
                        burst.taken += 1
                next_at += step
        except (ConfigError, DatasetError) as err:  # the region went away meanwhile
            burst.error = str(err)
        except Exception as err:  # noqa: BLE001 - a bug: say so, keep the daemon
            log.exception("collect: the burst of %s/%s failed", burst.camera, burst.region)
            burst.error = f"internal error: {type(err).__name__}"
        finally:
            deadline = time.monotonic() + SAVE_WAIT_S
            while burst.kept + burst.similar < burst.taken and time.monotonic() < deadline:
                time.sleep(0.02)  # the collector thread saves the last crops
            burst.running = False
            log.info("collect: burst of %s/%s done: %s", burst.camera, burst.region, burst.payload())
