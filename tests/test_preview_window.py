"""PreviewWindow without a usable display: logs once, ends, daemon keeps running.

The environment here has opencv-python-headless and no X server, which is
exactly the headless-Pi case. Showing a real window (and closing it with q)
needs a GUI OpenCV build plus a display, so only the close decision itself is
checked as a value below.
"""

from __future__ import annotations

import logging
import threading

import pytest

from edgecam.preview.hub import PreviewHub
from edgecam.preview.window import PreviewWindow, display_available, should_close
from tests.support.web_control import chelsea_bgr, make_result


def _run_window(environ: dict[str, str], window_only: bool) -> tuple[PreviewWindow, threading.Event]:
    hub = PreviewHub(10)
    frame = chelsea_bgr()
    hub.offer(frame, [make_result(1, frame)])
    shutdown = threading.Event()
    window = PreviewWindow(hub, shutdown, window_only=window_only, environ=environ)
    window.start()
    window.stop(timeout=5)
    return window, shutdown


@pytest.mark.parametrize("window_only", [False, True])
def test_no_display_variable_logs_once_and_keeps_the_daemon_running(
    caplog: pytest.LogCaptureFixture, window_only: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam.preview.window")
    window, shutdown = _run_window({}, window_only)
    assert not window.is_alive() and not window.opened
    assert not shutdown.is_set()  # no display is not a reason to stop the daemon
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "no display" in messages[0]


def test_headless_opencv_build_logs_once_and_keeps_the_daemon_running(caplog: pytest.LogCaptureFixture) -> None:
    # DISPLAY is set but this OpenCV has no highgui backend: cv2 raises "not implemented".
    caplog.set_level(logging.WARNING, logger="edgecam.preview.window")
    window, shutdown = _run_window({"DISPLAY": ":99"}, window_only=True)
    assert not window.opened and not shutdown.is_set()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "no GUI support" in messages[0]


def test_display_detection() -> None:
    assert not display_available({})
    assert display_available({"DISPLAY": ":0"})
    assert display_available({"WAYLAND_DISPLAY": "wayland-0"})


def test_close_keys() -> None:
    assert should_close(ord("q"), 1.0) and should_close(27, 1.0) and should_close(ord("Q") | 0x100000, 1.0)
    assert not should_close(-1, 1.0) and not should_close(ord("a"), 1.0)
    assert should_close(-1, 0.0)  # window closed with the mouse
