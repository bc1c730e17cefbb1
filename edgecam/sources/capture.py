"""The capture thread: source -> FrameRing, with reconnects.

It opens the source, reads frames and puts them into the ring stamped with
time.monotonic()/time.time() right after each read. On SourceError it logs one
warning per outage, closes the source and retries with a capped, jittered
backoff that waits on the stop event (so SIGTERM interrupts the wait); the
backoff is reset by the first good frame. EndOfStream (a non-looping file)
ends capture with state "ended"; the daemon decides what happens next.

Every frame is checked (``frames.to_bgr_frame``): a bad one is skipped and
counted, and only ``BAD_FRAME_LIMIT`` bad frames in a row count as a lost
source. The loop stamps ``heartbeat`` every turn, backoff waits included.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from edgecam.backoff import Backoff
from edgecam.buffer.ring import FrameRing
from edgecam.config import BackoffConfig
from edgecam.errors import EndOfStream, SourceError
from edgecam.heartbeat import Heartbeat
from edgecam.sources.base import FrameSource
from edgecam.sources.frames import BadFrame, to_bgr_frame

log = logging.getLogger(__name__)

STARTING, CONNECTED, LOST, ENDED, STOPPED = "starting", "connected", "lost", "ended", "stopped"

#: Bad frames in a row before the source counts as lost (and is reopened).
BAD_FRAME_LIMIT = 30
#: Longest stretch without a heartbeat while waiting out a backoff delay.
_BEAT_SLICE_S = 0.5

#: Called from the capture thread with (state, last_error) after every state change.
StateHook = Callable[[str, Optional[str]], None]


class CaptureThread:
    """Runs the capture loop on a daemon thread named "capture".

    ``stop_event`` is the thread's stop signal (the daemon may share one event
    between its threads); ``stop()`` sets it and joins for at most ``timeout``
    seconds, so it returns promptly even while a read blocks.
    """

    def __init__(self, source: FrameSource, ring: FrameRing, stop_event: threading.Event,
                 backoff: BackoffConfig) -> None:
        self.source = source
        self.ring = ring
        self._stop = stop_event
        self._backoff = Backoff(backoff.initial_s, backoff.max_s)
        self._hooks: list[StateHook] = []
        self._thread: Optional[threading.Thread] = None
        self.state = STARTING
        self.last_error: Optional[str] = None
        #: Successful recoveries after a loss.
        self.reconnects = 0
        #: SourceErrors seen (failed opens and failed reads).
        self.errors = 0
        self.frames = 0
        self.last_frame_mono: Optional[float] = None
        #: The latest backoff delay (s) of the current outage; None while connected.
        self.last_delay_s: Optional[float] = None
        #: Frames skipped as unusable (wrong dtype/shape), and how many in a row now.
        self.bad_frames = 0
        self._bad_in_a_row = 0
        #: When the current connection delivered its first frame (None while not connected).
        self.connected_since_mono: Optional[float] = None
        self.heartbeat = Heartbeat("capture")

    @property
    def connected(self) -> bool:
        return self.state == CONNECTED

    def on_state_change(self, hook: StateHook) -> None:
        """Register ``hook(state, last_error)``; it runs on the capture thread."""
        self._hooks.append(hook)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("CaptureThread already started")
        self.heartbeat.beat()
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.source.source_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """Signal the loop to end and wait up to ``timeout`` s. Returns True if it ended."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("capture thread still blocked in %s after %.1f s; leaving it (daemon thread)",
                        self.source.describe(), timeout)
            return False
        return True

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict[str, object]:
        """A snapshot for stats and the state topic."""
        age = None if self.last_frame_mono is None else round(time.monotonic() - self.last_frame_mono, 3)
        return {"state": self.state, "connected": self.connected, "source": self.source.source_id,
                "last_error": self.last_error, "reconnects": self.reconnects, "errors": self.errors,
                "frames": self.frames, "bad_frames": self.bad_frames, "last_frame_age_s": age}

    # -- the loop -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.heartbeat.beat()
                if not self._open():
                    continue
                if self._pump() == ENDED:
                    return
        except Exception:  # a bug, not a camera problem: keep the traceback
            log.exception("capture thread crashed")
        finally:
            self.source.close()
            if self.state != ENDED:
                self._set_state(STOPPED, self.last_error)

    def _open(self) -> bool:
        try:
            self.source.open()
        except SourceError as err:
            self._lost(err)
            return False
        except Exception as err:  # an unexpected failure inside a source: retry like a loss
            log.exception("capture: unexpected error opening %s", self.source.source_id)
            self._lost(err)
            return False
        log.debug("capture: opened %s", self.source.describe())
        return True

    def _pump(self) -> str:
        """Read until stop, loss or end. Returns the state that ended the pumping."""
        while not self._stop.is_set():
            self.heartbeat.beat()
            try:
                image = to_bgr_frame(self.source.read(), self.source.source_id)
            except EndOfStream as err:
                log.info("capture: %s", err)
                self._set_state(ENDED, None)
                return ENDED
            except BadFrame as err:
                if self._bad_frame(err):
                    return LOST
                continue
            except SourceError as err:
                self._lost(err)
                return LOST
            except Exception as err:  # an unexpected failure inside a source: retry like a loss
                log.exception("capture: unexpected error reading %s", self.source.source_id)
                self._lost(err)
                return LOST
            now_mono, now_wall = time.monotonic(), time.time()
            self.ring.put(image, now_mono, now_wall)
            self.frames += 1
            self._bad_in_a_row = 0
            self.last_frame_mono = now_mono
            if self.state != CONNECTED:
                self._connected()
        return STOPPED

    def _bad_frame(self, err: BadFrame) -> bool:
        """Skip and count one bad frame; True when too many in a row mean the source is lost."""
        self.bad_frames += 1
        self._bad_in_a_row += 1
        if self._bad_in_a_row == 1:
            log.warning("capture: skipped a bad frame: %s", err)
        if self._bad_in_a_row < BAD_FRAME_LIMIT:
            return False
        self._bad_in_a_row = 0
        self._lost(SourceError(f"{BAD_FRAME_LIMIT} bad frames in a row: {err}"))
        return True

    def _connected(self) -> None:
        if self.state == LOST:
            self.reconnects += 1
            log.info("capture: %s is back after %d retries", self.source.source_id, self._backoff.attempts)
        else:
            log.info("capture: first frame from %s", self.source.describe())
        self._backoff.reset()
        self.last_delay_s = None
        self.connected_since_mono = time.monotonic()
        self._set_state(CONNECTED, None)

    def _lost(self, err: Exception) -> None:
        """Close the source, report the outage once, wait the next backoff delay."""
        self.errors += 1
        self.source.close()
        message = str(err) or type(err).__name__
        if self.state != LOST:
            log.warning("capture: %s; retrying with backoff", message)
        else:
            log.debug("capture: still lost: %s", message)
        self.connected_since_mono = None
        self._set_state(LOST, message)
        self.last_delay_s = delay = self._backoff.next_delay()
        self._wait(delay)

    def _wait(self, delay: float) -> None:
        """Wait out a backoff delay (or until stop), beating the heartbeat meanwhile."""
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            self.heartbeat.beat()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, _BEAT_SLICE_S))

    def _set_state(self, state: str, error: Optional[str]) -> None:
        changed = state != self.state or error != self.last_error
        self.state, self.last_error = state, error
        if not changed:
            return
        for hook in self._hooks:
            try:
                hook(state, error)
            except Exception:
                log.exception("capture: on_state_change hook failed")
