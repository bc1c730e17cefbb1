"""One thread that runs the functions handed to it, one at a time, in the order they came.

The controller's "changes" thread: every change to what runs is prepared and
applied here, so two changes never interleave. Started with the daemon (a thread
that appears mid-run would look like a leak to the reliability soak).
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Optional, TypeVar

from edgecam.errors import EdgecamError

log = logging.getLogger(__name__)

T = TypeVar("T")


class SerialWorker:
    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[Optional[tuple[Callable[[], Any], Future[Any]]]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Refuse new work, cancel what waits, let the running function finish (bounded)."""
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, work: Callable[[], T]) -> "Future[T]":
        if self._stop.is_set():
            raise EdgecamError("the daemon is stopping: change not applied")
        future: Future[T] = Future()
        self._queue.put((work, future))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stop.is_set():
                break
            work, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work())
            except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(err)
        self._cancel_waiting()

    def _cancel_waiting(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[1].set_exception(EdgecamError("the daemon is stopping: change not applied"))
