"""A small progress bar on stderr (no dependency): redrawn in place on a terminal,
a few plain lines otherwise (logs, CI, systemd)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24
TTY_INTERVAL_S = 0.1
LOG_STEPS = 4  # non-terminal: a line at 25/50/75/100 %


class Progress:
    """``with Progress(total, "features") as bar: bar.update(n, note="...")``."""

    def __init__(self, total: int, what: str, stream: TextIO | None = None) -> None:
        self.total = max(1, int(total))
        self.what = what
        self.stream = stream or sys.stderr
        self.done = 0
        self.note = ""
        self.start = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn_at = 0.0
        self._logged = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, count: int = 1, note: str | None = None) -> None:
        self.done = min(self.total, self.done + count)
        if note is not None:
            self.note = note
        if self._tty:
            now = time.monotonic()
            if now - self._drawn_at >= TTY_INTERVAL_S or self.done == self.total:
                self._drawn_at = now
                self.stream.write("\r" + self._line())
                self.stream.flush()
        else:
            step = self.done * LOG_STEPS // self.total
            if step > self._logged:
                self._logged = step
                self.stream.write(self._line() + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\r" + self._line() + "\n")
            self.stream.flush()
        elif self._logged < LOG_STEPS and self.done > 0:
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def _line(self) -> str:
        filled = WIDTH * self.done // self.total
        bar = "#" * filled + "." * (WIDTH - filled)
        elapsed = time.monotonic() - self.start
        note = f"  {self.note}" if self.note else ""
        return f"{self.what:>12} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s{note}"
