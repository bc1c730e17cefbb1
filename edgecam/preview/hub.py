"""The hand-over point between the inference thread and preview consumers (one per camera).

The inference thread calls ``offer()`` after every result. That must stay
cheap: it updates two latency histograms and the result rate, and copies the
frame (a view into the ring buffer, only valid during the call) at most
``max_fps`` times per second. Annotating and JPEG encoding happen lazily in
the consumer's thread, once per new frame however many viewers ask: the
first caller encodes while the others wait on the same condition, and nobody
encodes while nobody watches.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Mapping, Optional, Sequence

import cv2
import numpy as np

from edgecam.histogram import Histogram, HistogramSnapshot
from edgecam.preview.overlay import draw_frame
from edgecam.result import Result

logger = logging.getLogger(__name__)

INFERENCE_HISTOGRAM = "edgecam_inference_latency_seconds"
TOTAL_HISTOGRAM = "edgecam_end_to_end_latency_seconds"
_FPS_WINDOW = 30  # results the FPS estimate averages over
#: A camera running at exactly max_fps jitters around the interval: copy frames 10% early rather
#: than skip every other one.
_CAP_SLACK = 0.9


FULL_FRAME_BOXES: dict[str, tuple[float, float, float, float]] = {"full": (0.0, 0.0, 1.0, 1.0)}


class PreviewHub:
    def __init__(
        self, max_fps: float, jpeg_quality: int = 80, clock: Callable[[], float] = time.monotonic,
        boxes: Optional[Mapping[str, Sequence[float]]] = None,
    ) -> None:
        if max_fps <= 0:
            raise ValueError("max_fps must be > 0")
        self.boxes = dict(boxes or FULL_FRAME_BOXES)  # region -> box (fractions), drawn on every frame
        self._region_results: dict[str, Result] = {}  # region -> its latest result
        self._states: dict[str, str] = {}  # region -> debounced label
        self._min_interval = 1.0 / max_fps
        self._quality = int(jpeg_quality)
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())  # the one lock
        self._inference_hist = Histogram()
        self._total_hist = Histogram()
        self._offer_times: collections.deque[float] = collections.deque(maxlen=_FPS_WINDOW)
        self._frame_times: collections.deque[float] = collections.deque(maxlen=_FPS_WINDOW)  # every frame
        self._latest_result: Optional[Result] = None
        self._results = 0
        # The capped, copied frame and what belongs to it.
        self._version = 0
        self._frame: Optional[np.ndarray] = None
        self._frame_results: dict[str, Result] = {}
        self._frame_fps: Optional[float] = None
        self._last_copy = float("-inf")
        # Lazily built products of the current version.
        self._annotated: Optional[tuple[int, np.ndarray]] = None
        self._jpeg: Optional[tuple[int, bytes]] = None
        self._encoding: set[int] = set()  # versions being annotated/encoded right now
        self.encodes = 0  # JPEG encodes done (for /metrics and tests)

    def set_boxes(self, boxes: Mapping[str, Sequence[float]]) -> None:
        """The regions changed (a live config reload): draw these boxes from now on."""
        self.boxes = dict(boxes)  # one assignment: readers see the old or the new dict

    # -- producer side (inference thread) -------------------------------------------------

    def offer(self, frame_bgr: np.ndarray, results: Sequence[Result],
              states: Optional[Mapping[str, str]] = None) -> None:
        """Record one frame's region ``results`` (and changed ``states``); copy
        ``frame_bgr`` if the capped rate allows."""
        now = self._clock()
        with self._cond:
            self._frame_times.append(now)
            for result in results:
                self._inference_hist.observe(result.inference_ms / 1000.0)
                self._total_hist.observe(result.total_ms / 1000.0)
                self._region_results[result.region] = result
                self._latest_result = result
            self._states.update(states or {})
            self._offer_times.append(now)
            self._results += 1
            if now - self._last_copy >= self._min_interval * _CAP_SLACK:
                self._last_copy = now
                self._frame = frame_bgr.copy()
                self._frame_results = dict(self._region_results)
                self._frame_fps = self._camera_fps_locked()
                self._version += 1
            self._cond.notify_all()  # frame waiters and wait_for_next_result

    def show(self, frame_bgr: np.ndarray) -> None:
        """A frame no region needed (an interval region between its turns, no motion, paused):
        the preview still shows it, with the regions' latest results, at the camera's rate."""
        now = self._clock()
        with self._cond:
            self._frame_times.append(now)
            if now - self._last_copy >= self._min_interval * _CAP_SLACK:
                self._last_copy = now
                self._frame = frame_bgr.copy()
                self._frame_results = dict(self._region_results)
                self._frame_fps = self._camera_fps_locked()
                self._version += 1
                self._cond.notify_all()

    def camera_fps(self) -> Optional[float]:
        """Frames per second the camera delivers (classified or not), None before two."""
        with self._cond:
            return self._camera_fps_locked()

    def _camera_fps_locked(self) -> Optional[float]:
        times = self._frame_times
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / (times[-1] - times[0])

    # -- consumer side -----------------------------------------------------------------------

    @property
    def version(self) -> int:
        with self._cond:
            return self._version

    def latest_result(self) -> Optional[Result]:
        with self._cond:
            return self._latest_result

    def region_results(self) -> dict[str, Result]:
        """The latest result of each region that has one."""
        with self._cond:
            return dict(self._region_results)

    def states(self) -> dict[str, str]:
        with self._cond:
            return dict(self._states)

    def fps(self) -> Optional[float]:
        """Results per second over the last ~30 results, None before two results."""
        with self._cond:
            return self._fps_locked()

    def results_seen(self) -> int:
        with self._cond:
            return self._results

    def wait_for_next_result(self, timeout: float) -> bool:
        """While results flow (the newest is at most ``timeout`` old), block until
        the next one arrives or ``timeout`` passes; True when one arrived. Uploads
        call it to run right after a camera result, in the gap before the next
        frame; with the camera paused or stalled it returns False at once."""
        with self._cond:
            if not self._offer_times or self._clock() - self._offer_times[-1] > timeout:
                return False
            after = self._results
            return self._cond.wait_for(lambda: self._results > after, timeout)

    def latest_annotated(self) -> Optional[tuple[int, np.ndarray]]:
        """(version, annotated BGR copy) of the newest frame, None before the first.
        The array is shared between callers: do not modify it."""
        product = self._product(want_jpeg=False)
        return None if product is None else (product[0], product[1])

    def latest_jpeg(self) -> Optional[bytes]:
        product = self._product(want_jpeg=True)
        return None if product is None else product[2]

    def wait_for_new(self, after_version: int, timeout: float) -> Optional[tuple[int, bytes]]:
        """Block until a frame newer than ``after_version`` exists (or timeout):
        (version, jpeg) or None on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._version > after_version, timeout):
                return None
        product = self._product(want_jpeg=True)
        if product is None:
            return None
        return product[0], product[2]  # type: ignore[return-value]

    def histograms(self) -> dict[str, tuple[str, HistogramSnapshot]]:
        with self._cond:
            return {
                INFERENCE_HISTOGRAM: ("Model inference time per classified frame.", self._inference_hist.snapshot()),
                TOTAL_HISTOGRAM: ("Capture to result latency (wait + inference + publish).",
                                  self._total_hist.snapshot()),
            }

    # -- internals ---------------------------------------------------------------------------

    def _fps_locked(self) -> Optional[float]:
        if len(self._offer_times) < 2:
            return None
        span = self._offer_times[-1] - self._offer_times[0]
        return (len(self._offer_times) - 1) / span if span > 0 else None

    def _product(self, want_jpeg: bool) -> Optional[tuple[int, np.ndarray, Optional[bytes]]]:
        """Annotated frame (and JPEG) of the current version, built at most once.

        Work happens outside the lock so offer() never waits for an encode;
        concurrent callers for the same version wait for the one doing it.
        """
        with self._cond:
            while True:
                version = self._version
                if version == 0 or self._frame is None:
                    return None
                cached = self._cached_locked(version, want_jpeg)
                if cached is not None:
                    return cached
                if version not in self._encoding:
                    break
                self._cond.wait(1.0)
            self._encoding.add(version)
            frame, results, fps = self._frame, self._frame_results, self._frame_fps
            states = dict(self._states)
            annotated = self._annotated[1] if self._annotated and self._annotated[0] == version else None
        try:
            if annotated is None:
                annotated = draw_frame(frame, self.boxes, results, states, fps)
            jpeg = self._encode(annotated) if want_jpeg else None
        except BaseException:
            with self._cond:
                self._encoding.discard(version)
                self._cond.notify_all()
            raise
        with self._cond:
            if self._annotated is None or self._annotated[0] <= version:
                self._annotated = (version, annotated)
            if jpeg is not None:
                self.encodes += 1
                if self._jpeg is None or self._jpeg[0] <= version:
                    self._jpeg = (version, jpeg)
            self._encoding.discard(version)
            self._cond.notify_all()
        return version, annotated, jpeg

    def _cached_locked(self, version: int, want_jpeg: bool) -> Optional[tuple[int, np.ndarray, Optional[bytes]]]:
        if self._annotated is None or self._annotated[0] != version:
            return None
        if not want_jpeg:
            return version, self._annotated[1], None
        if self._jpeg is not None and self._jpeg[0] == version:
            return version, self._annotated[1], self._jpeg[1]
        return None

    def _encode(self, image: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), self._quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode the preview frame as JPEG")
        return buf.tobytes()
