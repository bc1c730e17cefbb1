"""systemd's sd_notify protocol in a few lines of stdlib.

With ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a filesystem path, or
an abstract socket written with a leading '@') and expects datagrams such as
``READY=1``. With ``WatchdogSec=`` it also sets ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``) and restarts the service when ``WATCHDOG=1`` stops arriving.

The daemon should ping the watchdog only from the inference loop while frames
flow (``WatchdogPinger.ping()`` after each result), so a stuck pipeline - not
just a live process - triggers the restart. Without NOTIFY_SOCKET (running by
hand, in tests) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Mapping, Optional

logger = logging.getLogger(__name__)


class SdNotifier:
    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_s = _watchdog_interval(env)
        self._sock: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send one datagram of newline-separated ``KEY=value`` fields.
        Returns True when sent; failures are logged once and never raised
        (a missing notify socket must not take the daemon down)."""
        if self._address is None:
            return False
        data = "\n".join(fields).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, self._address)
                return True
            except OSError as err:
                if not self._warned:
                    logger.warning("sd_notify to %r failed: %s", _printable(self._address), err)
                    self._warned = True
                return False

    def ready(self, status: Optional[str] = None) -> bool:
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            fields.append(f"STATUS={_one_line(status)}")
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: Optional[str] = None) -> bool:
        fields = ["STOPPING=1"] + ([f"STATUS={_one_line(status)}"] if status else [])
        return self.notify(*fields)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more start/stop time, e.g. while a large model loads."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog_interval_s(self) -> Optional[float]:
        """WatchdogSec in seconds when the watchdog is armed for this process."""
        return self._watchdog_s

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class WatchdogPinger:
    """Rate-limits WATCHDOG=1 to once per half the watchdog interval.

    Call ``ping()`` as often as you like (after every result); it sends only
    when half the interval has passed, the cadence systemd recommends.
    A no-op when the watchdog is not armed.
    """

    def __init__(self, notifier: SdNotifier, clock: Callable[[], float] = time.monotonic) -> None:
        self._notifier = notifier
        interval = notifier.watchdog_interval_s()
        self._period = None if interval is None else interval / 2.0
        self._clock = clock
        self._last = float("-inf")
        self._lock = threading.Lock()  # inference and main loop may ping at once: one send per period
        self.sent = 0

    @property
    def period_s(self) -> Optional[float]:
        return self._period

    def ping(self) -> bool:
        if self._period is None:
            return False
        with self._lock:
            now = self._clock()
            if now - self._last < self._period:
                return False
            self._last = now
        if self._notifier.watchdog():
            self.sent += 1
            return True
        return False


def _socket_address(value: str) -> Optional[str]:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # Linux abstract namespace
    if value.startswith("/"):
        return value
    logger.warning("ignoring NOTIFY_SOCKET=%r: neither an absolute path nor an @abstract name", value)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> Optional[float]:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    try:
        value = int(usec)
        if pid and int(pid) != os.getpid():
            return None  # meant for another process (e.g. our parent)
    except ValueError:
        logger.warning("ignoring malformed WATCHDOG_USEC=%r / WATCHDOG_PID=%r", usec, pid)
        return None
    return value / 1_000_000 if value > 0 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _printable(address: str) -> str:
    return "@" + address[1:] if address.startswith("\0") else address
