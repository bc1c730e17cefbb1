"""The inference thread: newest frame -> classifier -> immutable Result.

It never works through a backlog: each turn it asks the ring for the newest
frame it has not seen, so a result's capture age stays bounded by about one
inference time however far capture runs ahead.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

import cv2
import numpy as np

from edgecam.buffer.ring import FrameRing
from edgecam.errors import EdgecamError
from edgecam.heartbeat import Heartbeat
from edgecam.result import Result

log = logging.getLogger(__name__)

#: Failed classifications in a row before the thread gives up (the daemon then exits 1
#: and systemd restarts it); a single failure is logged, counted and skipped.
ERROR_LIMIT = 10


@dataclass(frozen=True)
class InferenceSettings:
    """Runtime knobs; the daemon swaps the whole object to change them."""

    top_k: int = 3
    max_fps: float = 0.0  # 0 = unlimited
    smoothing: int = 1  # mean of the last N probability vectors; 1 = off
    skip_unchanged: bool = False
    skip_threshold: float = 2.0  # mean abs diff (0-255) on a 32x32 grey thumbnail
    max_skip_s: float = 10.0

    def replace(self, **changes: Any) -> "InferenceSettings":
        return dataclasses.replace(self, **changes)


class ChangeDetector:
    """Cheap "did the scene change?" test on a tiny grey thumbnail (~0.1 ms)."""

    def __init__(self) -> None:
        self._last: Optional[np.ndarray] = None

    @staticmethod
    def thumbnail(frame: np.ndarray) -> np.ndarray:
        small = cv2.resize(frame, (32, 32), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.int16)

    def difference(self, frame: np.ndarray) -> float:
        """Mean absolute difference to the last remembered thumbnail (inf if none)."""
        if self._last is None:
            return float("inf")
        return float(np.abs(self.thumbnail(frame) - self._last).mean())

    def remember(self, frame: np.ndarray) -> None:
        self._last = self.thumbnail(frame)


class InferenceThread:
    def __init__(self, ring: FrameRing, classifier: Any, settings: InferenceSettings,
                 emit: Callable[[Result, np.ndarray], None], stop_event: threading.Event,
                 device_id: str, source_id: str) -> None:
        self.ring = ring
        self.classifier = classifier
        self.settings = settings
        self.paused = False
        self._emit = emit  # called with (result, frame view) while the frame is still held
        self._stop = stop_event
        self._device_id = device_id
        self._source_id = source_id
        self._thread: Optional[threading.Thread] = None
        self._history: deque[np.ndarray] = deque(maxlen=settings.smoothing)
        self._change = ChangeDetector()
        self._last_classified = 0.0
        self.processed = 0
        self.skipped = 0
        self.last_result_mono: Optional[float] = None
        #: Last result or deliberate skip: proof that frames get through, not just that we loop.
        self.last_progress_mono: Optional[float] = None
        self.errors = 0
        self._errors_in_a_row = 0
        self.error: Optional[BaseException] = None
        self.heartbeat = Heartbeat("inference")

    def start(self) -> None:
        self.heartbeat.beat()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
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

    def _loop(self) -> None:
        last_seq = -1
        while not self._stop.is_set():
            self.heartbeat.beat()
            if self.paused:
                self.last_progress_mono = time.monotonic()  # idle on purpose: counts as progress
                self._stop.wait(0.05)
                continue
            if self._throttle():
                continue
            view = self.ring.get_latest(after_seq=last_seq, timeout=0.1)
            if view is None:
                continue
            last_seq = view.seq
            try:
                self._handle(view)
            except EdgecamError as err:
                self._failed(err)
            finally:
                self.ring.release(view)

    def _failed(self, err: EdgecamError) -> None:
        """One frame could not be classified: log, count, go on; give up after ERROR_LIMIT in a row."""
        self.errors += 1
        self._errors_in_a_row += 1
        if self._errors_in_a_row == 1:
            log.warning("inference: frame skipped: %s", err)
        if self._errors_in_a_row >= ERROR_LIMIT:
            raise EdgecamError(f"{ERROR_LIMIT} frames in a row failed to classify; last: {err}")

    def _throttle(self) -> bool:
        """Honour max_fps by waiting before taking a frame, so the frame is fresh."""
        max_fps = self.settings.max_fps
        if max_fps <= 0:
            return False
        remaining = self._last_classified + 1.0 / max_fps - time.monotonic()
        if remaining > 0:
            self._stop.wait(min(remaining, 0.1))
            return True
        return False

    def _should_skip(self, frame: np.ndarray, now: float) -> bool:
        settings = self.settings
        if not settings.skip_unchanged:
            return False
        if now - self._last_classified >= settings.max_skip_s:
            return False
        return self._change.difference(frame) < settings.skip_threshold

    def _handle(self, view: Any) -> None:
        settings = self.settings
        start = time.monotonic()
        if self._should_skip(view.image, start):
            self.skipped += 1
            self.last_progress_mono = start
            return
        probabilities = self.classifier.probabilities(view.image)
        end = time.monotonic()
        if settings.skip_unchanged:
            self._change.remember(view.image)
        self._last_classified = start
        result = self._make_result(view, self._smooth(probabilities, settings.smoothing), start, end)
        self.processed += 1
        self._errors_in_a_row = 0
        self.last_result_mono = self.last_progress_mono = end
        self._emit(result, view.image)

    def _smooth(self, probabilities: np.ndarray, window: int) -> np.ndarray:
        if self._history.maxlen != window:
            self._history = deque(self._history, maxlen=window)
        self._history.append(probabilities)
        if window == 1:
            return probabilities
        return np.mean(np.stack(self._history), axis=0)

    def _make_result(self, view: Any, probabilities: np.ndarray, start: float, end: float) -> Result:
        info = self.classifier.info
        height, width = view.image.shape[:2]
        return Result(
            device=self._device_id, source=self._source_id, seq=view.seq,
            captured_mono=view.captured_mono, captured_wall=view.captured_wall,
            inference_start=start, inference_end=end,
            top=tuple(self.classifier.top_k(probabilities, self.settings.top_k)),
            model_name=info.name, model_precision=info.precision, model_input_size=info.input_size,
            frame_width=width, frame_height=height,
        )
