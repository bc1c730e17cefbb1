"""CaptureThread: reconnect with backoff, prompt stop, end of stream, file moved away and back.

The sources are real (OpenCVSource on a video file written by the test). Two
small wrappers inject failures into a real source: ``FlakySource`` (reads that
raise SourceError) and ``BlockingSource`` (a read that never returns).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from edgecam.buffer.ring import FrameRing
from edgecam.config import BackoffConfig, SourceConfig
from edgecam.errors import SourceError
from edgecam.sources.base import FrameSource
from edgecam.sources.capture import CaptureThread
from edgecam.sources.factory import make_source
from tests.test_sources import VIDEO_FRAMES, write_test_video


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class FlakySource(FrameSource):
    """Wraps a real source; the next ``failures`` reads raise SourceError."""

    def __init__(self, inner: FrameSource, failures: int) -> None:
        self.inner = inner
        self.source_id = inner.source_id
        self.failures = failures
        self.failed_at: list[float] = []
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        self.inner.open()

    def read(self) -> np.ndarray:
        if self.failures > 0:
            self.failures -= 1
            self.failed_at.append(time.monotonic())
            raise SourceError("camera unplugged (injected)")
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


class BlockingSource(FrameSource):
    """Wraps a real source; after ``good`` frames a read blocks until ``unblock`` is set."""

    def __init__(self, inner: FrameSource, good: int) -> None:
        self.inner = inner
        self.good = good
        self.unblock = threading.Event()
        self.blocked = threading.Event()
        self.closed = False

    def open(self) -> None:
        self.inner.open()

    def read(self) -> np.ndarray:
        if self.good <= 0:
            self.blocked.set()
            self.unblock.wait(30)
        self.good -= 1
        return self.inner.read()

    def close(self) -> None:
        self.closed = True
        self.inner.close()


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_test_video(tmp_path / "clip.avi")


def capture_of(source: FrameSource, initial_s: float = 0.02, max_s: float = 0.5) -> tuple[CaptureThread, list]:
    capture = CaptureThread(source, FrameRing(4), threading.Event(), BackoffConfig(initial_s=initial_s, max_s=max_s))
    states: list = []
    capture.on_state_change(lambda state, error: states.append((state, error)))
    return capture, states


def test_failing_reads_then_recovery(video: Path) -> None:
    flaky = FlakySource(make_source(SourceConfig(uri=str(video), fps=None)), failures=3)
    capture, states = capture_of(flaky, initial_s=0.02, max_s=0.5)
    capture.start()
    try:
        wait_for(lambda: capture.frames >= 5)
        assert capture.connected and capture.state == "connected"
        assert capture.reconnects == 1 and capture.errors == 3 and capture.last_error is None
        # One "lost" (the repeated identical error is not re-announced), then "connected".
        assert states == [("lost", "camera unplugged (injected)"), ("connected", None)]
        assert flaky.opens == 4
        gaps = np.diff(flaky.failed_at)
        # Exponential backoff with +/-25 % jitter: 0.02, 0.04 s (plus scheduling slack).
        assert 0.015 <= gaps[0] < 0.1 and 0.03 <= gaps[1] < 0.15

        # A second outage starts from the initial delay again: the backoff was reset.
        flaky.failures = 2
        wait_for(lambda: capture.reconnects == 2)
        assert flaky.failed_at[-1] - flaky.failed_at[-2] < 0.1  # 0.02 s, not 0.16 s
        assert capture.last_frame_mono is not None and time.monotonic() - capture.last_frame_mono < 1.0
    finally:
        assert capture.stop()
    assert capture.state == "stopped" and states[-1][0] == "stopped"
    assert capture.ring.counters()["captured"] == capture.frames


def test_backoff_delays_are_capped(tmp_path: Path) -> None:
    missing = make_source(SourceConfig(uri=str(tmp_path / "nowhere.avi")))
    capture, states = capture_of(missing, initial_s=0.02, max_s=0.08)
    delays: list[float] = []
    capture.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if capture.last_delay_s is not None and (not delays or delays[-1] != capture.last_delay_s):
                delays.append(capture.last_delay_s)
            time.sleep(0.005)
    finally:
        capture.stop()
    assert capture.errors >= 8, "retries continue while the file is missing"
    assert max(delays) <= 0.08 and min(delays) >= 0.015
    assert states[0] == ("lost", f"video file {tmp_path / 'nowhere.avi'} not found")
    assert not capture.connected and capture.reconnects == 0


def test_stop_during_a_long_backoff_returns_within_a_second(tmp_path: Path) -> None:
    capture, _ = capture_of(make_source(SourceConfig(uri=str(tmp_path / "nowhere.avi"))), initial_s=30, max_s=60)
    capture.start()
    wait_for(lambda: capture.state == "lost")
    start = time.monotonic()
    assert capture.stop() is True
    assert time.monotonic() - start < 1.0
    assert not capture.is_alive() and capture.state == "stopped"


def test_stop_while_a_read_blocks_returns_within_a_second(video: Path) -> None:
    blocking = BlockingSource(make_source(SourceConfig(uri=str(video), pace=False)), good=3)
    capture, _ = capture_of(blocking)
    capture.start()
    assert blocking.blocked.wait(5)
    start = time.monotonic()
    assert capture.stop(timeout=1.0) is False  # still inside read(): left as a daemon thread
    assert time.monotonic() - start < 1.3
    blocking.unblock.set()  # the read returns: the loop sees the stop and closes the source
    wait_for(lambda: not capture.is_alive())
    # 3 good frames, then the frame the blocked read finally returned.
    assert blocking.closed and capture.state == "stopped" and capture.frames == 4


def test_non_looping_file_ends_cleanly(video: Path) -> None:
    capture, states = capture_of(make_source(SourceConfig(uri=str(video), pace=False, loop=False)))
    capture.start()
    wait_for(lambda: not capture.is_alive())
    assert capture.state == "ended" and not capture.connected
    assert [s for s, _ in states] == ["connected", "ended"]
    assert capture.frames == VIDEO_FRAMES == capture.ring.counters()["captured"]
    assert capture.stop() is True and capture.state == "ended"


def test_file_moved_away_and_back_while_running(video: Path, tmp_path: Path) -> None:
    capture, states = capture_of(make_source(SourceConfig(uri=str(video))), initial_s=0.05, max_s=0.2)
    capture.start()
    try:
        wait_for(lambda: capture.frames >= 3)
        away = tmp_path / "away.avi"
        video.rename(away)
        wait_for(lambda: capture.state == "lost")
        assert "is gone" in (capture.last_error or "")
        time.sleep(0.3)
        frames_while_lost = capture.frames
        time.sleep(0.3)
        assert capture.frames == frames_while_lost, "no frames while the file is away"
        away.rename(video)
        wait_for(lambda: capture.connected and capture.frames > frames_while_lost + 2)
        assert capture.reconnects == 1
        names = [s for s, _ in states]
        # The error changes from "is gone" to "not found": "lost" is announced again, new text.
        assert names == ["connected", "lost", "lost", "connected"]
        assert "not found" in (states[2][1] or "")
        status = capture.status()
        assert status["state"] == "connected" and status["source"] == "file:clip.avi"
    finally:
        capture.stop()


def test_a_failing_state_hook_does_not_stop_capture(video: Path) -> None:
    capture, _ = capture_of(make_source(SourceConfig(uri=str(video), pace=False)))

    def broken(state: str, error: object) -> None:
        raise RuntimeError("hook bug")

    capture.on_state_change(broken)
    capture.start()
    try:
        wait_for(lambda: capture.frames >= 10)
    finally:
        capture.stop()


class ListSource(FrameSource):
    """Hands out the given frames in order (then the last one forever): a camera whose
    decoder sometimes produces odd frames."""

    source_id = "odd"

    def __init__(self, frames: list) -> None:
        self.frames = list(frames)
        self.opens = 0

    def open(self) -> None:
        self.opens += 1

    def read(self) -> np.ndarray:
        time.sleep(0.002)
        return self.frames.pop(0) if len(self.frames) > 1 else self.frames[0]

    def close(self) -> None:
        pass


def test_odd_frames_are_skipped_counted_or_converted() -> None:
    good = np.full((120, 160, 3), 90, np.uint8)
    grey = np.full((120, 160), 200, np.uint8)
    bgra = np.full((120, 160, 4), 50, np.uint8)
    frames = [good, np.zeros((120, 160, 3), np.uint16), grey, np.zeros((2, 4000, 3), np.uint8), bgra,
              np.zeros((120, 160, 2), np.uint8), good]
    ring = FrameRing(16)
    stop = threading.Event()
    capture = CaptureThread(ListSource(frames), ring, stop, BackoffConfig(initial_s=0.05, max_s=0.1))
    capture.start()
    try:
        wait_for(lambda: capture.frames >= 6)
    finally:
        capture.stop()
    assert capture.bad_frames == 3  # uint16, 4000x2, two channels
    assert capture.state != "lost" and capture.errors == 0
    seen = []
    while (view := ring.get_latest(timeout=0)) is not None:
        seen.append(view.image.copy())
        view.release()
    assert all(image.shape == (120, 160, 3) and image.dtype == np.uint8 for image in seen)
    # (the newest frames only: the ring keeps the latest)
    assert capture.status()["bad_frames"] == 3


def test_bad_frames_in_a_row_count_as_a_lost_source() -> None:
    from edgecam.sources.capture import BAD_FRAME_LIMIT

    bad = np.zeros((120, 160, 3), np.float32)
    source = ListSource([bad] * (BAD_FRAME_LIMIT + 5) + [np.full((120, 160, 3), 1, np.uint8)])
    ring = FrameRing(4)
    stop = threading.Event()
    capture = CaptureThread(source, ring, stop, BackoffConfig(initial_s=0.05, max_s=0.1))
    states: list[tuple[str, object]] = []
    capture.on_state_change(lambda state, error: states.append((state, error)))
    capture.start()
    try:
        wait_for(lambda: capture.reconnects >= 1)
    finally:
        capture.stop()
    lost = [error for state, error in states if state == "lost"]
    assert len(lost) == 1 and f"{BAD_FRAME_LIMIT} bad frames in a row" in str(lost[0]), states
    assert "float32" in str(lost[0])
    assert source.opens == 2 and capture.bad_frames == BAD_FRAME_LIMIT + 5
