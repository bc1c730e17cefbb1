"""OpenCV (cv2.VideoCapture) source: a USB camera, a video file, or an RTSP/HTTP stream.

Three kinds, chosen from the uri:

- device ("0", "/dev/video0"): width/height/fps/FOURCC requested via CAP_PROP_*,
  and CAP_PROP_BUFFERSIZE=1 so reads return a fresh frame rather than one from
  OpenCV's internal queue (opencv#13145).
- stream (any "scheme://" uri): opened through FFmpeg with open/read timeouts.
- file (anything else): paced at its native frame rate (``pace``), rewound at
  the end (``loop``) or ended with EndOfStream. The path is checked on every
  read, so a file moved away raises SourceError (the capture thread retries)
  and playback resumes once it is back.

Device and stream reads run on a helper thread (``_TimedReader``) so a read that
hangs is abandoned after ``read_timeout_s`` with a SourceError instead of
freezing the capture thread.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from edgecam.config import SourceConfig
from edgecam.errors import EndOfStream, SourceError
from edgecam.sources.base import FrameSource
from edgecam.sources.pacing import Pacer

log = logging.getLogger(__name__)

DEFAULT_FILE_FPS = 30.0


def classify_uri(uri: str) -> str:
    """'device' for "0" or "/dev/videoN", 'stream' for "scheme://...", else 'file'."""
    text = uri.strip()
    if text.isdigit() or text.startswith("/dev/"):
        return "device"
    if "://" in text:
        return "stream"
    return "file"


def redact_url(url: str) -> str:
    """The URL with any password replaced by '***' (safe for logs and payloads)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def as_bgr(frame: np.ndarray, source_id: str) -> np.ndarray:
    """Normalise a decoded frame to BGR uint8 HxWx3."""
    if frame.dtype != np.uint8:
        raise SourceError(f"{source_id}: frames are {frame.dtype}, expected 8-bit (uint8)")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise SourceError(f"{source_id}: unexpected frame shape {frame.shape}")


class _TimedReader:
    """Runs ``cap.read()`` on a daemon thread so a hung read can be abandoned.

    After a timeout the capture object belongs to the helper thread, which
    releases it when (if ever) the read returns: releasing a VideoCapture while
    another thread reads from it is not safe.
    """

    def __init__(self, cap: cv2.VideoCapture, name: str) -> None:
        self._cap = cap
        self._go = threading.Event()
        self._done = threading.Event()
        self._result: tuple[bool, Optional[np.ndarray]] = (False, None)
        self._in_flight = False
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def read(self, timeout: float) -> Optional[tuple[bool, Optional[np.ndarray]]]:
        """(ok, frame) from cap.read(), or None if no answer within ``timeout``."""
        if self._in_flight:
            return None  # an earlier read is still stuck
        self._done.clear()
        self._in_flight = True
        self._go.set()
        if not self._done.wait(timeout):
            return None
        return self._result

    def _loop(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()
            if self._closing:
                break
            try:
                result = self._cap.read()
            except cv2.error as err:
                log.debug("cap.read() raised: %s", err)
                result = (False, None)
            self._result = result
            self._in_flight = False
            self._done.set()
        self._cap.release()

    def close(self) -> None:
        stuck = self._in_flight
        self._closing = True
        self._go.set()
        if not stuck:
            self._thread.join(timeout=2.0)  # device released before any reopen


class OpenCVSource(FrameSource):
    """cv2.VideoCapture behind the FrameSource interface (see module docstring)."""

    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        self.uri = cfg.uri.strip()
        self.kind = classify_uri(self.uri)
        self._cap: Optional[cv2.VideoCapture] = None
        self._reader: Optional[_TimedReader] = None
        self._pacer: Optional[Pacer] = None
        self._file_id: Optional[tuple[int, int]] = None
        self.native_fps: Optional[float] = None
        if self.kind == "device":
            target = self._device_target()
            self.source_id = f"usb{target}" if isinstance(target, int) else Path(str(target)).name
        elif self.kind == "stream":
            self.source_id = redact_url(self.uri)
        else:
            self.path = Path(self.uri).expanduser()
            self.source_id = f"file:{self.path.name}"

    def _device_target(self) -> Union[int, str]:
        return int(self.uri) if self.uri.isdigit() else self.uri

    # -- open -------------------------------------------------------------------
    def open(self) -> None:
        self.close()
        if self.kind == "file":
            self._open_file()
        elif self.kind == "device":
            self._open_device()
        else:
            self._open_stream()

    def _open_file(self) -> None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise SourceError(f"video file {self.path} not found") from None
        except OSError as err:
            raise SourceError(f"cannot access video file {self.path}: {err.strerror}") from None
        if not self.path.is_file():
            raise SourceError(f"{self.path} is not a regular file")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video file {self.path}: not a video format OpenCV can decode")
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not 0 < fps <= 1000:
            fps = self.cfg.fps or DEFAULT_FILE_FPS
            log.info("%s: no usable frame rate in the file; pacing at %.1f fps", self.source_id, fps)
        self.native_fps = fps
        self._cap = cap
        self._file_id = (info.st_dev, info.st_ino)
        self._pacer = Pacer(fps) if self.cfg.pace else None

    def _open_device(self) -> None:
        cap = cv2.VideoCapture(self._device_target(), cv2.CAP_ANY)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera device {self.uri} "
                              "(not connected, busy, or this user lacks access to /dev/video*?)")
        cfg = self.cfg
        if cfg.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*cfg.fourcc))
        if cfg.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
        if cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
        if cfg.fps:
            cap.set(cv2.CAP_PROP_FPS, cfg.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fresh frames, not OpenCV's queue (opencv#13145)
        log.info("%s: opened at %dx%d, %.1f fps", self.source_id, cap.get(cv2.CAP_PROP_FRAME_WIDTH),
                 cap.get(cv2.CAP_PROP_FRAME_HEIGHT), cap.get(cv2.CAP_PROP_FPS))
        self._reader = _TimedReader(cap, f"read-{self.source_id}")

    def _open_stream(self) -> None:
        # FFmpeg's own read timeout is a backstop at twice ours: our watchdog reports
        # first, and FFmpeg's bounds how long an abandoned helper thread lives.
        ms = int(self.cfg.read_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 2 * ms]
        cap = cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open stream {self.source_id} "
                              "(unreachable, wrong URL or credentials, or unsupported format)")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._reader = _TimedReader(cap, "read-stream")

    # -- read -------------------------------------------------------------------
    def read(self) -> np.ndarray:
        if self.kind == "file":
            frame = self._read_file()
            if self._pacer is not None:
                self._pacer.wait()
            return frame
        return self._read_live()

    def _read_live(self) -> np.ndarray:
        if self._reader is None:
            raise SourceError(f"{self.source_id} is not open")
        timeout = self.cfg.read_timeout_s
        result = self._reader.read(timeout)
        if result is None:
            raise SourceError(f"no frame from {self.source_id} for {timeout:.1f} s (read_timeout_s)")
        ok, frame = result
        if not ok or frame is None:
            what = "camera" if self.kind == "device" else "stream"
            raise SourceError(f"{what} {self.source_id} stopped delivering frames")
        return as_bgr(frame, self.source_id)

    def _read_file(self) -> np.ndarray:
        if self._cap is None:
            raise SourceError(f"{self.source_id} is not open")
        self._check_file_still_there()
        ok, frame = self._cap.read()
        if not ok:
            if not self.cfg.loop:
                raise EndOfStream(f"end of video file {self.path}")
            self._reopen_file()  # rewinding by reopening works for every container
            ok, frame = self._cap.read()
            if not ok:
                raise SourceError(f"video file {self.path} has no readable frames")
        return as_bgr(frame, self.source_id)

    def _check_file_still_there(self) -> None:
        try:
            info = os.stat(self.path)
        except OSError:
            raise SourceError(f"video file {self.path} is gone (moved or deleted)") from None
        if (info.st_dev, info.st_ino) != self._file_id:
            log.info("%s: file was replaced on disk; reopening", self.source_id)
            self._reopen_file()

    def _reopen_file(self) -> None:
        pacer = self._pacer
        self.close()
        self._open_file()
        if pacer is not None:
            self._pacer = pacer  # keep the schedule across a rewind

    # -- close ------------------------------------------------------------------
    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def describe(self) -> str:
        if self.kind == "file":
            mode = "paced" if self.cfg.pace else "unpaced"
            fps = f"{self.native_fps:.1f} fps, " if self.native_fps else ""
            return f"video file {self.path} ({fps}{mode}, {'looping' if self.cfg.loop else 'once'})"
        if self.kind == "device":
            return f"camera device {self.uri}"
        return f"stream {self.source_id}"
