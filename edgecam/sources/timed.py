"""Run a source's blocking calls (open, read, release) on a helper thread with deadlines.

A camera driver or a pipe can block a native call forever, and a Python thread
stuck in C cannot be interrupted. So a source hands each such call to its
``TimedCaller``: the capture thread waits at most ``timeout`` seconds and gets a
SourceError, while the helper keeps the stuck call. Calls never overlap: while
one is stuck, the next is refused at once (no pile of stuck threads), and
``stuck_for()`` tells the daemon how long it has been stuck, so the watchdog can
ask systemd for the restart that is the only way out.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Optional

from edgecam.errors import SourceError


class CallTimeout(SourceError):
    """A timed call did not return within its deadline (the helper still runs it)."""


class TimedCaller:
    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.Queue[Optional[tuple[Callable[[], Any], dict[str, Any], threading.Event]]] = queue.Queue()
        self._busy_since: Optional[float] = None  # set while a call runs (stuck or not)
        self._busy_what = ""
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], Any], timeout: float, what: str) -> Any:
        """``fn()`` on the helper thread; its result, its exception, or CallTimeout."""
        since = self._busy_since
        if since is not None:
            raise CallTimeout(f"{self.name}: an earlier {self._busy_what} has been hung for "
                              f"{time.monotonic() - since:.0f} s; not calling {what} until it returns")
        box: dict[str, Any] = {}
        done = threading.Event()
        self._busy_what = what
        self._busy_since = time.monotonic()
        self._jobs.put((fn, box, done))
        if not done.wait(timeout):
            raise CallTimeout(f"{self.name}: {what} did not return within {timeout:.1f} s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def run_later(self, fn: Callable[[], Any]) -> None:
        """Queue ``fn`` after whatever runs now (e.g. releasing a device a stuck read holds)."""
        self._jobs.put((fn, {}, threading.Event()))

    def stuck_for(self) -> float:
        """Seconds the current call has been running (a normal read: under 1/fps); 0 when idle."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def close(self) -> None:
        """End the helper after the queued calls (at once when idle)."""
        self._jobs.put(None)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, box, done = job
            try:
                box["value"] = fn()
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                box["error"] = err
            finally:
                self._busy_since = None
                done.set()
