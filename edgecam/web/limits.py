"""Bounds on what clients can hold: open connections, MJPEG streams, uploads
being decoded and classified, and the time to send a request.

Every limit answers 503 + Retry-After when reached (never a hang), and the
503s are logged by BusyLog: the first at once, then at most one line a minute
with a count, so a flood cannot flood the journal.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TypeVar

from edgecam.config import HttpPreviewConfig
from edgecam.web.errors import Busy

logger = logging.getLogger(__name__)

BUSY_LOG_INTERVAL_S = 60.0
T = TypeVar("T")


class BusyLog:
    """Counts 503s by reason; logs the first, then a summary at most once per interval."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, interval_s: float = BUSY_LOG_INTERVAL_S) -> None:
        self._clock = clock
        self._interval = interval_s
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._last_log: float | None = None
        self.total = 0

    def refused(self, reason: str, limit: str) -> None:
        now = self._clock()
        with self._lock:
            self.total += 1
            if self._last_log is None:
                self._last_log = now
                first = True
            elif now - self._last_log >= self._interval:
                self._pending[reason] += 1
                counts, span = dict(self._pending), now - self._last_log
                self._pending.clear()
                self._last_log = now
                first = False
            else:
                self._pending[reason] += 1
                return
        if first:
            logger.warning("web preview busy: answered 503 (%s reached); further 503s are counted and "
                           "logged at most once a minute", limit)
        else:
            by_reason = ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))
            logger.warning("web preview busy: answered 503 to %d requests in the last %.0f s (%s); latest: %s "
                           "reached", sum(counts.values()), span, by_reason, limit)


class Limits:
    """The counters and slots behind preview.http's connection settings."""

    def __init__(self, cfg: HttpPreviewConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_connections = cfg.max_connections
        self.max_streams = cfg.max_streams
        self.classify_concurrency = cfg.classify_concurrency
        self.classify_wait_s = cfg.classify_wait_s
        self._lock = threading.Lock()
        self._classify = threading.BoundedSemaphore(cfg.classify_concurrency)
        self._executor: Optional[ThreadPoolExecutor] = None
        self.connections = 0
        self.streams = 0
        self.busy = BusyLog(clock)

    def open_connection(self) -> bool:
        """Count a new connection; False (not counted) when max_connections are open."""
        with self._lock:
            if self.connections >= self.max_connections:
                return False
            self.connections += 1
            return True

    def close_connection(self) -> None:
        with self._lock:
            self.connections -= 1

    @contextmanager
    def stream_slot(self) -> Iterator[None]:
        with self._lock:
            if self.streams >= self.max_streams:
                raise Busy("streams", f"max_streams ({self.max_streams})")
            self.streams += 1
        try:
            yield
        finally:
            with self._lock:
                self.streams -= 1

    def run_classify(self, work: Callable[[], T]) -> T:
        """``work()`` (decode + classify) on one of classify_concurrency threads of
        its own, waiting up to classify_wait_s for one to be free (Busy after that).
        Own threads rather than the calling worker: memory that decoding and the
        model allocate stays in that many malloc arenas, not one per worker."""
        if not self._classify.acquire(timeout=self.classify_wait_s):
            raise Busy("classify", f"classify_concurrency ({self.classify_concurrency})")
        try:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.classify_concurrency, "edgecam-http-classify")
                executor = self._executor
            return executor.submit(work).result()
        finally:
            self._classify.release()

    def stop(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class DeadlineReader(io.RawIOBase):
    """A socket's reads under one deadline: each recv may only wait for the
    time left, so a client sending a byte every few seconds is cut off at the
    deadline instead of restarting a per-read timeout with every byte."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self.deadline = deadline
        self._seconds_per_byte = 0.0

    def follow_progress(self, min_bytes_per_s: float) -> None:
        """For large bodies (a 100 MB model over a slow link): every byte that arrives buys
        1/``min_bytes_per_s`` s more, so an upload that keeps moving is never cut off, while
        a client dripping a byte now and then still is, at the original deadline."""
        self._seconds_per_byte = 1.0 / min_bytes_per_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self._sock.settimeout(left)
        received = self._sock.recv_into(buffer)
        self.deadline += received * self._seconds_per_byte
        return received
