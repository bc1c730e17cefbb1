"""THE ONLY FAKE IN THE EDGECAM TEST SUITE: a thin stand-in for the ``picamera2`` module.

The real picamera2 needs a Raspberry Pi with a camera and libcamera, so the
tests of ``edgecam.sources.picamera2_source`` put this folder on ``sys.path``
(inside those tests only) and import this file as ``picamera2``.

It implements only what the source calls: ``Picamera2()``,
``create_preview_configuration``, ``configure``, ``camera_configuration``,
``start``, ``stop``, ``close`` and ``captured_request(wait=...)`` yielding a
request with ``make_array(name)``. Frames are rendered from ``Picamera2.scene``
(a BGR image the test sets) in the layouts picamera2 documents:

- main "RGB888": (h, w, 3) uint8 in B, G, R byte order;
- lores "YUV420": (h * 3 // 2, stride) uint8, planar I420 whose rows are padded
  to ``stride`` bytes (64-byte aligned; the chroma rows to stride // 2), the
  padding filled with 255 so a reader that forgets to crop it sees garbage.

Counters let tests check the source's use of the library: ``instances``
(Picamera2 objects created), ``open_requests`` (requests not yet released).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, Optional

import cv2
import numpy as np

STRIDE_ALIGN = 64


def _stride(width: int) -> int:
    return (width + STRIDE_ALIGN - 1) // STRIDE_ALIGN * STRIDE_ALIGN


def yuv420_with_stride(bgr: np.ndarray, stride: int) -> np.ndarray:
    """The I420 bytes of ``bgr`` laid out as picamera2 delivers a YUV420 stream."""
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y = i420[: h * w].reshape(h, w)
    u = i420[h * w: h * w * 5 // 4].reshape(h // 2, w // 2)
    v = i420[h * w * 5 // 4:].reshape(h // 2, w // 2)

    def pad(plane: np.ndarray, row_bytes: int) -> np.ndarray:
        out = np.full((plane.shape[0], row_bytes), 255, np.uint8)
        out[:, : plane.shape[1]] = plane
        return out.reshape(-1)

    flat = np.concatenate([pad(y, stride), pad(u, stride // 2), pad(v, stride // 2)])
    return flat.reshape(h * 3 // 2, stride)


class _Request:
    def __init__(self, camera: "Picamera2") -> None:
        self._camera = camera
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("request used after release")
        stream = self._camera.camera_configuration()[name]
        w, h = stream["size"]
        image = cv2.resize(Picamera2.scene, (w, h), interpolation=cv2.INTER_AREA)
        if stream["format"] == "RGB888":
            return image.copy()
        if stream["format"] == "YUV420":
            return yuv420_with_stride(image, stream["stride"])
        raise RuntimeError(f"fake picamera2: format {stream['format']} not implemented")

    def release(self) -> None:
        if not self.released:
            self.released = True
            Picamera2.open_requests -= 1


class Picamera2:
    #: BGR image every frame is rendered from; tests replace it.
    scene: np.ndarray = np.zeros((480, 640, 3), np.uint8)
    instances = 0
    open_requests = 0
    requests = 0

    def __init__(self) -> None:
        Picamera2.instances += 1
        self.started = False
        self.closed = False
        self._config: Optional[dict[str, Any]] = None

    def create_preview_configuration(self, main: dict[str, Any], lores: Optional[dict[str, Any]] = None,
                                     controls: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        return {"main": dict(main), "lores": dict(lores) if lores else None, "controls": dict(controls or {})}

    def configure(self, config: dict[str, Any]) -> None:
        if self.started or self.closed:
            raise RuntimeError("Camera must be stopped (and open) before configuring")
        config = copy.deepcopy(config)
        for name in ("main", "lores"):
            stream = config.get(name)
            if stream:
                w = stream["size"][0]
                stream["stride"] = _stride(w * 3) if stream["format"] == "RGB888" else _stride(w)
        self._config = config

    def camera_configuration(self) -> dict[str, Any]:
        assert self._config is not None, "not configured"
        return self._config

    def start(self) -> None:
        if self._config is None or self.closed:
            raise RuntimeError("Camera not configured")
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
        self.closed = True

    @contextlib.contextmanager
    def captured_request(self, wait: Optional[float] = None) -> Iterator[_Request]:
        if not self.started:
            raise RuntimeError("Camera is not running")
        request = _Request(self)
        Picamera2.open_requests += 1
        Picamera2.requests += 1
        try:
            yield request
        finally:
            request.release()
