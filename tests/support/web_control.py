"""Helpers for the preview tests: real frames, real Result objects, and a small
plain-Python implementation of our own DaemonControl protocol.

``ControlDouble`` is a test double for edgecam's *own* interface (not for
hardware): it lets the HTTP layer be tested before/independently of the daemon.
Its classify_image is deterministic and depends on the pixels (Top-3 of the
B, G, R channel means), so tests can check that an upload really arrived
decoded, in BGR order.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

import numpy as np

from edgecam.model.types import Label
from edgecam.result import Result


def chelsea_bgr() -> np.ndarray:
    """skimage's chelsea (a real photo of a cat, 300x451) as BGR uint8."""
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[:, :, ::-1])


def coffee_bgr() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.coffee()[:, :, ::-1])


def make_result(seq: int, frame: np.ndarray, inference_ms: float = 12.5, wait_ms: float = 3.0,
                top: Optional[tuple[Label, ...]] = None) -> Result:
    now = time.monotonic()
    start = now - inference_ms / 1000.0
    captured = start - wait_ms / 1000.0
    if top is None:
        top = (Label("tabby, tabby cat", 281, 0.61), Label("tiger cat", 282, 0.27), Label("Egyptian cat", 285, 0.07))
    return Result(
        device="testcam", source="demo", seq=seq, captured_mono=captured, captured_wall=time.time(),
        inference_start=start, inference_end=now, top=top, model_name="resnet18_160_int8",
        model_precision="int8", model_input_size=160, frame_width=frame.shape[1], frame_height=frame.shape[0],
    )


def channel_top3(bgr: np.ndarray) -> list[Label]:
    means = bgr.reshape(-1, 3).astype(np.float64).mean(axis=0)
    scores = means / means.sum()
    names = ("blue", "green", "red")
    order = np.argsort(-scores)
    return [Label(names[i], int(i), float(scores[i])) for i in order]


class ControlDouble:
    """Implements edgecam.control.protocol.DaemonControl with plain state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.healthy: tuple[bool, str] = (True, "ok")
        self.counters = {"captured": 0, "processed": 0, "dropped": 0, "skipped": 0, "published": 0,
                         "publish_dropped": 0}
        self._paused = False
        self.classified: list[tuple[int, ...]] = []  # shapes of images classify_image received
        # Set to an Event to make classify_image wait for it (a slow model); in_classify counts waiters.
        self.gate: Optional[threading.Event] = None
        self.in_classify = 0

    def tick(self, n: int = 1) -> None:
        with self._lock:
            self.counters["captured"] += n
            self.counters["processed"] += n
            self.counters["published"] += n
            self.counters["dropped"] += n // 3

    @property
    def paused(self) -> bool:
        return self._paused

    def camera_names(self) -> list[str]:
        return ["default"]

    def pause(self, camera: Optional[str] = None) -> bool:
        self._paused = True
        return True

    def resume(self, camera: Optional[str] = None) -> bool:
        self._paused = False
        return False

    def apply_settings(self, settings: dict[str, Any], camera: Optional[str] = None,
                       region: Optional[str] = None) -> dict[str, Any]:
        return dict(settings)

    def state(self) -> dict[str, Any]:
        return {"paused": self._paused, "device": "testcam", "version": "test"}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            snapshot: dict[str, Any] = dict(self.counters)
        snapshot.update(queue_depth=2, mqtt_connected=True, capture_fps=30.0, inference_fps=14.5,
                        cpu_percent=55.0, rss_mb=120.5, uptime_s=42.0)
        return snapshot

    def snapshot_jpeg(self, camera: Optional[str] = None) -> Optional[bytes]:
        return None

    def int8_kernels(self) -> dict:
        return {"exact": False, "mode": "off", "simd": "test", "reason": "a test double"}

    def health(self) -> tuple[bool, str]:
        return self.healthy

    def classify_image(self, bgr: np.ndarray) -> tuple[list[Label], float]:
        start = time.perf_counter()
        if self.gate is not None:
            with self._lock:
                self.in_classify += 1
            try:
                self.gate.wait(30)
            finally:
                with self._lock:
                    self.in_classify -= 1
        self.classified.append(tuple(bgr.shape))
        labels = channel_top3(bgr)
        return labels, (time.perf_counter() - start) * 1000.0
