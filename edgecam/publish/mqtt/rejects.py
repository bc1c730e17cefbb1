"""Rejected commands in the journal: at most one line per kind every 10 s, then a count.

Anyone who can publish on ``<prefix>/cmd`` (an anonymous home broker: anyone on the
LAN) can send thousands of bad commands a second. Each still gets its reply; the
journal gets the first of each kind, and every ``interval_s`` after that one line
saying how many more there were.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

logger = logging.getLogger("edgecam.publish.mqtt.commands")

#: Rejected commands are logged at most this often per kind (with a count of the rest).
REJECT_LOG_INTERVAL_S = 10.0

#: kind -> how the log line names it.
KINDS = {
    "malformed": "malformed",
    "target": "unknown camera or region",
    "setting": "refused setting",
    "rate": "rate-limited capture",
    "busy": "command queue full",
    "failed": "failed",
    "crashed": "internal error",
    "retained": "retained command",
    "refused": "refused (config writes off)",
}


class RejectLog:
    """Counts every rejected command by kind and logs at most one line per kind per interval.
    Thread-safe: the command worker and paho's network thread (queue full) both report."""

    def __init__(self, interval_s: float = REJECT_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.counts: Counter[str] = Counter()  # every rejection, by kind, since the start
        self._lock = threading.Lock()  # guards the three fields below and counts
        self._last: dict[str, float] = {}  # kind -> when its last line was logged
        self._suppressed: Counter[str] = Counter()  # kind -> rejections since that line

    def __call__(self, kind: str, message: str, traceback: bool = False) -> None:
        """One rejection of ``kind`` (a key of KINDS); ``message`` says what was wrong."""
        now = time.monotonic()
        with self._lock:
            self.counts[kind] += 1
            if now - self._last.get(kind, float("-inf")) < self.interval_s:
                self._suppressed[kind] += 1
                return
            more = self._suppressed.pop(kind, 0)
            self._last[kind] = now
        suffix = f" ({more} more of this kind in the last {self.interval_s:g} s)" if more else ""
        logger.warning("Rejected MQTT command (%s): %s%s", KINDS.get(kind, kind), message, suffix,
                       exc_info=traceback)

    def flush(self) -> None:
        """Log the counts of kinds whose interval has passed with rejections not yet reported
        (called when the command worker is idle, so a flood that stops is still told)."""
        now = time.monotonic()
        due = []
        with self._lock:
            for kind, more in list(self._suppressed.items()):
                if more and now - self._last.get(kind, float("-inf")) >= self.interval_s:
                    due.append((kind, more))
                    del self._suppressed[kind]
                    self._last[kind] = now
        for kind, more in due:
            logger.warning("Rejected MQTT command (%s): %d more in the last %g s", KINDS.get(kind, kind), more,
                           self.interval_s)
