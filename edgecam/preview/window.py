"""A local OpenCV window showing the hub's latest annotated frame.

On a headless Pi (no DISPLAY / WAYLAND_DISPLAY) or with opencv-python-headless,
whose highgui functions raise ``cv2.error: ... not implemented``, the thread
logs once that there is no display and ends; the daemon keeps running (the
HTTP preview is the way to watch then). ``q`` or Esc closes the window; with
``window_only=True`` closing it also sets the shared stop event so the daemon
exits (the window was the point of this run).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Mapping, Optional

import cv2

from edgecam.preview.hub import PreviewHub

logger = logging.getLogger(__name__)

_CLOSE_KEYS = (ord("q"), ord("Q"), 27)  # 27 = Esc
_POLL_MS = 30


def display_available(environ: Optional[Mapping[str, str]] = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def should_close(key: int, visible: float) -> bool:
    """waitKey() result and WND_PROP_VISIBLE -> close? (-1 = no key pressed)."""
    return (key != -1 and (key & 0xFF) in _CLOSE_KEYS) or visible < 1


class PreviewWindow:
    def __init__(
        self,
        hub: PreviewHub,
        shutdown: threading.Event,
        window_only: bool = False,
        title: str = "edgecam",
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._hub = hub
        self._shutdown = shutdown  # the daemon's stop event, set only when window_only
        self._window_only = window_only
        self._title = title
        self._environ = environ
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.shown = 0  # frames handed to imshow
        self.opened = False  # a window was actually created
        self.closed_by_user = False

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="edgecam-window", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        if not display_available(self._environ):
            logger.warning("no display (DISPLAY/WAYLAND_DISPLAY unset): running without the preview window")
            return
        try:
            cv2.namedWindow(self._title, cv2.WINDOW_NORMAL)
        except cv2.error as err:
            reason = "this OpenCV build has no GUI support" if "not implemented" in str(err) else str(err).strip()
            logger.warning("cannot open the preview window (%s): running without it", reason)
            return
        self.opened = True
        try:
            self._loop()
        finally:
            _quietly(cv2.destroyWindow, self._title)
        if self.closed_by_user and self._window_only:
            logger.info("preview window closed: stopping")
            self._shutdown.set()

    def _loop(self) -> None:
        last_version = 0
        while not self._stop.is_set() and not self._shutdown.is_set():
            item = self._hub.latest_annotated()
            if item is not None and item[0] != last_version:
                last_version, image = item
                cv2.imshow(self._title, image)
                self.shown += 1
            key = cv2.waitKey(_POLL_MS)
            visible = cv2.getWindowProperty(self._title, cv2.WND_PROP_VISIBLE) if self.shown else 1.0
            if should_close(key, visible):
                self.closed_by_user = True
                return


def _quietly(func, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        func(*args)
    except cv2.error:
        pass
