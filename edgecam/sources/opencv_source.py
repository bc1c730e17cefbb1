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

Device and stream opens, reads and releases run on a helper thread
(``TimedCaller``): an open or read that hangs is abandoned after
``read_timeout_s`` with a SourceError instead of freezing the capture thread,
and ``stuck_for()`` tells the daemon when a native call never came back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Optional, TypeVar, Union
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from edgecam.config import SourceConfig
from edgecam.errors import EndOfStream, SourceError
from edgecam.sources.base import FrameSource
from edgecam.sources.pacing import Pacer
from edgecam.sources.timed import CallTimeout, TimedCaller

log = logging.getLogger(__name__)

DEFAULT_FILE_FPS = 30.0
T = TypeVar("T")


def classify_uri(uri: str) -> str:
    """'device' for "0" or "/dev/videoN", 'stream' for "scheme://...", else 'file'."""
    text = uri.strip()
    if text.isdigit() or text.startswith("/dev/"):
        return "device"
    if "://" in text:
        return "stream"
    return "file"


# Query parameters that carry credentials in camera URLs (snapshot CGIs, tokens...).
SECRET_PARAMS = frozenset({"user", "username", "usr", "login", "pwd", "pass", "passwd", "password", "token",
                           "access_token", "auth", "authorization", "key", "apikey", "api_key", "secret",
                           "sig", "signature", "credentials", "session", "sessionid"})


def redact_url(url: str) -> str:
    """The URL with its credentials replaced by '***' (safe for logs, payloads and /health):
    the password of ``user:pass@``, a bare token in ``TOKEN@host``, and the values of
    query parameters such as ``user=``, ``pwd=`` or ``token=``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else f"***@{host}"
    query = "&".join(_redact_param(item) for item in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_param(item: str) -> str:
    name, has_value, _ = item.partition("=")
    return f"{name}=***" if has_value and name.lower() in SECRET_PARAMS else item


class OpenCVSource(FrameSource):
    """cv2.VideoCapture behind the FrameSource interface (see module docstring)."""

    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        self.uri = cfg.uri.strip()
        self.kind = classify_uri(self.uri)
        self._cap: Optional[cv2.VideoCapture] = None
        self._live: Optional[cv2.VideoCapture] = None  # device/stream capture, owned by _caller's thread
        self._caller: Optional[TimedCaller] = None
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
        self._live = self._timed(self._make_device_capture, "open")
        log.info("%s: opened at %dx%d, %.1f fps", self.source_id, self._live.get(cv2.CAP_PROP_FRAME_WIDTH),
                 self._live.get(cv2.CAP_PROP_FRAME_HEIGHT), self._live.get(cv2.CAP_PROP_FPS))

    def _make_device_capture(self) -> cv2.VideoCapture:
        """Runs on the helper thread (VideoCapture's open can block in the driver)."""
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
        return cap

    def _open_stream(self) -> None:
        self._live = self._timed(self._make_stream_capture, "open")

    def _make_stream_capture(self) -> cv2.VideoCapture:
        """Runs on the helper thread. FFmpeg's own timeouts are a backstop at twice ours
        (they do not cover every input, e.g. a pipe): our deadline reports first."""
        ms = int(self.cfg.read_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 2 * ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 2 * ms]
        cap = cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open stream {self.source_id} "
                              "(unreachable, wrong URL or credentials, or unsupported format)")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def _timed(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` on this source's helper thread, bounded by read_timeout_s."""
        if self._caller is None:
            self._caller = TimedCaller(f"camera-{self.source_id}")
        return self._caller.call(fn, self.cfg.read_timeout_s, f"{what} of {self.source_id}")

    def stuck_for(self) -> float:
        return self._caller.stuck_for() if self._caller is not None else 0.0

    # -- read -------------------------------------------------------------------
    def read(self) -> np.ndarray:
        if self.kind == "file":
            frame = self._read_file()
            if self._pacer is not None:
                self._pacer.wait()
            return frame
        return self._read_live()

    def _read_live(self) -> np.ndarray:
        cap = self._live
        if cap is None:
            raise SourceError(f"{self.source_id} is not open")
        try:
            ok, frame = self._timed(cap.read, "read")
        except cv2.error as err:
            raise SourceError(f"{self.source_id}: read failed ({err})") from None
        except CallTimeout as err:
            raise SourceError(f"no frame from {self.source_id} for {self.cfg.read_timeout_s:.1f} s "
                              f"(read_timeout_s): {err}") from None
        if not ok or frame is None:
            what = "camera" if self.kind == "device" else "stream"
            raise SourceError(f"{what} {self.source_id} stopped delivering frames")
        return frame

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
        return frame

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
        live, self._live = self._live, None
        if live is not None and self._caller is not None:
            # Released on the helper thread, after a read it may still be stuck in:
            # releasing a VideoCapture while another thread reads it is not safe.
            self._caller.run_later(live.release)
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
