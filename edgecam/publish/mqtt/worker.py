"""A worker thread for the MQTT sink: events from a bounded queue, handled one at a time.

The sink runs two of them, so that nothing from the network can hold up a state
change: ``edgecam-mqtt`` delivers (the outbox, republishing after a reconnect,
discovery: ``delivery.py``), ``edgecam-mqtt-cmd`` runs commands
(``command_worker.py``), which may take the daemon a while each.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("edgecam.publish.mqtt")

Event = tuple[Any, ...]


class EventWorker:
    """``handle(event)`` for every posted event, on one thread; when no event came within
    ``wait_s()`` seconds, ``idle()``. A handler that raises is logged and the thread goes on."""

    def __init__(self, name: str, handle: Callable[[Event], None], queue_size: int,
                 idle: Callable[[], None] | None = None, wait_s: Callable[[], float] | None = None) -> None:
        self.name = name
        self._handle = handle
        self._idle = idle
        self._wait_s = wait_s or (lambda: 0.5)
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("MQTT: %s did not stop within %.1f s (a handler is still busy); leaving it",
                               self.name, timeout_s)

    def post(self, event: Event) -> bool:
        """Queue one event without waiting; False when the queue is full (the caller decides)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            return False
        return True

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._queue.get(timeout=max(0.0, self._wait_s()))
            except queue.Empty:
                event = None
            if self._stop.is_set():
                return
            try:
                if event is not None:
                    self._handle(event)
                elif self._idle is not None:
                    self._idle()
            except Exception:
                logger.exception("MQTT %s: unexpected error handling %s", self.name,
                                 event[0] if event is not None else "the idle tick")
