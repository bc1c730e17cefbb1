"""Changes to what runs, applied by the one thread that owns it, between two inference turns.

Cameras, regions, models and the pause flags are owned by the inference thread:
nothing else mutates them. Any other thread (MQTT commands, the web app, the
SIGHUP reload) hands the owner a request: a function that makes the change. The
owner runs the queued requests, in order, at the top of each turn, when no frame
is held and no model runs; the caller gets the function's return value, or its
exception, once it ran. A request must be quick and do no I/O: slow work (reading
files, loading models) is done by the caller before, and the request only swaps
the prepared objects in.

Before the owner starts (while the daemon is being assembled) and after it has
stopped, requests run on the caller's thread, one at a time.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, Generic, Optional, TypeVar

from edgecam.errors import EdgecamError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a caller waits for the owner to take its request: a turn is milliseconds, so
#: this only runs out when the inference thread is stuck (a wedged model or camera call).
TAKE_TIMEOUT_S = 10.0

_PENDING, _TAKEN, _CANCELLED = "pending", "taken", "cancelled"


class ChangeRefused(EdgecamError):
    """The owner could not take the change (stuck, or stopping): nothing changed."""


class _Request(Generic[T]):
    def __init__(self, apply: Callable[[], T]) -> None:
        self.apply = apply
        self.status = _PENDING  # guarded by ChangeQueue._queue_lock
        self.done = threading.Event()
        self.result: Optional[T] = None
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.result = self.apply()
        except BaseException as err:  # noqa: BLE001 - handed back to the caller, who re-raises it
            self.error = err
        finally:
            self.done.set()

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class ChangeQueue:
    def __init__(self, take_timeout_s: float = TAKE_TIMEOUT_S) -> None:
        self._take_timeout_s = take_timeout_s
        self._queue: deque[_Request[object]] = deque()
        self._queue_lock = threading.Lock()  # guards _queue, _owner_active, _closed and each request's status
        self._inline_lock = threading.Lock()  # one inline request at a time while no owner runs
        self._owner_active = False
        self._closed = False
        self._wake: Optional[Callable[[], None]] = None
        self.applied = 0

    # -- the owner's side -------------------------------------------------------------
    def attach_owner(self, wake: Callable[[], None]) -> None:
        """The owner thread starts taking requests; ``wake`` interrupts its wait for frames."""
        with self._inline_lock, self._queue_lock:
            self._owner_active = True
            self._wake = wake

    def detach_owner(self) -> None:
        """The owner stops: requests still queued are refused, later ones refused too."""
        with self._queue_lock:
            self._owner_active = False
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            for request in left:
                request.status = _CANCELLED
        for request in left:
            request.error = ChangeRefused("the daemon is stopping: change not applied")
            request.done.set()

    def run_pending(self) -> int:
        """On the owner thread, between two turns: apply every queued request, in order."""
        ran = 0
        while True:
            with self._queue_lock:
                if not self._queue:
                    return ran
                request = self._queue.popleft()
                if request.status != _PENDING:
                    continue
                request.status = _TAKEN
            request.run()
            ran += 1
            self.applied += 1

    @property
    def pending(self) -> int:
        with self._queue_lock:
            return len(self._queue)

    # -- everyone else ----------------------------------------------------------------
    def call(self, apply: Callable[[], T], timeout_s: Optional[float] = None) -> T:
        """Run ``apply`` on the owner thread between two turns; its result or exception."""
        request: _Request[T] = _Request(apply)
        with self._queue_lock:
            if self._closed:
                raise ChangeRefused("the daemon is stopping: change not applied")
            queued = self._owner_active
            if queued:
                self._queue.append(request)  # type: ignore[arg-type]
                wake = self._wake
        if not queued:
            return self._run_inline(request)
        if wake is not None:
            wake()
        if not request.done.wait(self._take_timeout_s if timeout_s is None else timeout_s):
            with self._queue_lock:
                if request.status == _PENDING:
                    request.status = _CANCELLED
            if request.status == _CANCELLED:
                raise ChangeRefused("the inference thread did not take the change in time (is a model or "
                                    "a camera call stuck?): nothing changed")
            request.done.wait()  # taken just now: a request is quick, its outcome is the truth
        return request.outcome()

    def _run_inline(self, request: "_Request[T]") -> T:
        with self._inline_lock:
            with self._queue_lock:
                owner_started = self._owner_active
            if owner_started:  # the owner attached while we waited for the inline lock
                return self.call(request.apply)
            request.run()
            self.applied += 1
        return request.outcome()
