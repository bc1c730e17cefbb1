"""Raspberry Pi camera through picamera2 (libcamera).

picamera2 comes from the OS packages on a Pi (``sudo apt install
python3-picamera2``; create the venv with ``--system-site-packages``), so it is
imported inside ``open()`` only.

One Picamera2 object serves the whole process: creating it again leaks memory
(picamera2 issues #958, #1183). ``close()`` only stops the camera; the object is
closed by ``shutdown_picamera2()``, registered with atexit on first use.

With ``use_lores`` the small YUV420 "lores" stream is read and converted to BGR
(it arrives as (h*3/2, stride) bytes of I420: convert, then crop the stride
padding).
Otherwise the "main" RGB888 stream is read, which numpy sees in BGR order.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any, Optional

import cv2
import numpy as np

from edgecam.config import SourceConfig
from edgecam.errors import ConfigError, SourceError
from edgecam.sources.base import FrameSource

log = logging.getLogger(__name__)

_INSTALL_HINT = ("install it from the OS packages (sudo apt install python3-picamera2) and create "
                 "the virtualenv with --system-site-packages")

# The process-wide Picamera2 object, created on first open and reused after.
_camera: Any = None
_camera_lock = threading.Lock()


def _get_camera() -> Any:
    global _camera
    with _camera_lock:
        if _camera is not None:
            return _camera
        try:
            from picamera2 import Picamera2
        except ImportError as err:
            raise SourceError(f"picamera2 is not available ({err}): {_INSTALL_HINT}") from None
        try:
            _camera = Picamera2()
        except Exception as err:  # libcamera raises assorted errors when no camera is attached
            raise SourceError(f"no Raspberry Pi camera found ({type(err).__name__}: {err})") from None
        atexit.register(shutdown_picamera2)
        return _camera


def shutdown_picamera2() -> None:
    """Stop and close the process-wide Picamera2 object (at exit, or in tests)."""
    global _camera
    with _camera_lock:
        camera, _camera = _camera, None
    if camera is None:
        return
    for step in (camera.stop, camera.close):
        try:
            step()
        except Exception as err:  # shutting down: report, carry on
            log.warning("picamera2 %s failed: %s", step.__name__, err)


class Picamera2Source(FrameSource):
    source_id = "picamera2"

    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        self.main_size = (cfg.width or 640, cfg.height or 480)
        pc = cfg.picamera2
        self.use_lores = pc.use_lores
        self.lores_size = (pc.lores_width, pc.lores_height)
        if self.use_lores and (self.lores_size[0] > self.main_size[0] or self.lores_size[1] > self.main_size[1]):
            raise ConfigError(
                f"source.picamera2: lores {self.lores_size[0]}x{self.lores_size[1]} must not be larger than "
                f"the main stream {self.main_size[0]}x{self.main_size[1]} (source.width/height)")
        if self.use_lores and (self.lores_size[0] % 2 or self.lores_size[1] % 2):
            raise ConfigError("source.picamera2: lores_width and lores_height must be even for YUV420")
        self._camera: Any = None
        self._frame_size: Optional[tuple[int, int]] = None  # (w, h) of the stream we read

    @property
    def stream(self) -> str:
        return "lores" if self.use_lores else "main"

    def open(self) -> None:
        camera = _get_camera()
        streams: dict[str, Any] = {"main": {"format": "RGB888", "size": self.main_size}}
        if self.use_lores:
            streams["lores"] = {"size": self.lores_size, "format": "YUV420"}
        if self.cfg.fps:
            streams["controls"] = {"FrameRate": float(self.cfg.fps)}
        try:
            camera.stop()  # harmless when stopped; needed before configure after a lost camera
            camera.configure(camera.create_preview_configuration(**streams))
            camera.start()
            actual = camera.camera_configuration()[self.stream]["size"]
        except Exception as err:
            raise SourceError(f"cannot start the Pi camera ({type(err).__name__}: {err})") from None
        self._camera = camera
        self._frame_size = (int(actual[0]), int(actual[1]))
        log.info("picamera2: streaming %s %dx%d", self.stream, *self._frame_size)

    def read(self) -> np.ndarray:
        camera = self._camera
        if camera is None:
            raise SourceError("picamera2 source is not open")
        try:
            with camera.captured_request(wait=self.cfg.read_timeout_s) as request:
                array = request.make_array(self.stream)
                frame = self._to_bgr(array)
        except TimeoutError:
            raise SourceError(f"no frame from the Pi camera for {self.cfg.read_timeout_s:.1f} s") from None
        except SourceError:
            raise
        except Exception as err:
            raise SourceError(f"Pi camera read failed ({type(err).__name__}: {err})") from None
        return frame

    def _to_bgr(self, array: np.ndarray) -> np.ndarray:
        assert self._frame_size is not None
        width, height = self._frame_size
        if not self.use_lores:
            return array[:, :, :3]  # RGB888 is BGR byte order in numpy
        if array.ndim != 2 or array.shape[0] != height * 3 // 2 or array.shape[1] < width:
            raise SourceError(f"picamera2 lores frame has shape {array.shape}, expected "
                              f"({height * 3 // 2}, >= {width}) for {width}x{height} YUV420")
        # libcamera's YUV420 is I420 (Y, then U, then V). OpenCV's COLOR_YUV420p2BGR
        # means YV12 (V before U) and would swap the chroma planes: picamera2's own
        # Qt preview uses it and then shows the result as RGB. I420 -> BGR is right.
        bgr = cv2.cvtColor(array, cv2.COLOR_YUV2BGR_I420)  # (h, stride, 3)
        return bgr[:, :width]  # drop the stride padding

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        try:
            camera.stop()  # keep the object: re-creating Picamera2 leaks (picamera2 #958)
        except Exception as err:
            log.warning("picamera2 stop failed: %s", err)

    def describe(self) -> str:
        w, h = self._frame_size or (self.lores_size if self.use_lores else self.main_size)
        return f"Raspberry Pi camera ({self.stream} {w}x{h})"
