"""A small progress bar on stderr (no dependency): redrawn in place on a terminal,
a few plain lines otherwise (logs, CI, systemd). With ``--progress-json`` each bar
also sends throttled ``progress`` events (``events.py``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from edgecam.training.events import events

WIDTH = 24
TTY_INTERVAL_S = 0.1
LOG_STEPS = 4  # non-terminal: a line at 25/50/75/100 %
EVENT_INTERVAL_S = 0.5  # at most two progress events a second per bar


class Progress:
    """``with Progress(total, "features") as bar: bar.update(n, note="...")``.

    A loop that ends before ``total`` (early stopping) calls ``stop_early``: the bar
    then ends full, saying where it stopped, instead of stalling at e.g. 19/200.
    """

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
        self._evented_at = float("-inf")
        self._stopped_at: int | None = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, count: int = 1, note: str | None = None) -> None:
        self.done = min(self.total, self.done + count)
        if note is not None:
            self.note = note
        self._event()
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

    def stop_early(self, note: str) -> None:
        """The work ended at ``done`` of ``total`` on purpose: the final line says so."""
        self._stopped_at = self.done
        self.note = note

    def close(self) -> None:
        self._event(final=True)
        if self._tty:
            self.stream.write("\r" + self._line() + "\n")
            self.stream.flush()
        elif (self._logged < LOG_STEPS or self._stopped_at is not None) and self.done > 0:
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def _event(self, final: bool = False) -> None:
        sink = events()
        if not sink.enabled:
            return
        now = time.monotonic()
        if final or self.done == self.total or now - self._evented_at >= EVENT_INTERVAL_S:
            self._evented_at = now
            sink.emit("progress", phase=self.what, done=self.done, total=self.total,
                      finished=final or self.done == self.total)

    def _line(self) -> str:
        if self._stopped_at is not None:
            bar, count = "#" * WIDTH, f"{self._stopped_at}/{self.total}"
        else:
            filled = WIDTH * self.done // self.total
            bar, count = "#" * filled + "." * (WIDTH - filled), f"{self.done}/{self.total}"
        elapsed = time.monotonic() - self.start
        note = f"  {self.note}" if self.note else ""
        return f"{self.what:>12} [{bar}] {count} {elapsed:5.1f}s{note}"


def epoch_done(bar: Progress, phase: str, epoch: int, max_epochs: int, loss: float, acc: float,
               advance: int = 1) -> None:
    """One training epoch ended: the bar moves on, and an ``epoch`` event says how it went."""
    events().emit("epoch", phase=phase, epoch=epoch, max_epochs=max_epochs,
                  val_loss=round(float(loss), 4), val_accuracy=round(float(acc), 4))
    bar.update(advance, note=f"val loss {loss:.3f} acc {acc:.1%}")


def stopped_early(bar: Progress, phase: str, epoch: int, best_epoch: int, max_epochs: int) -> None:
    """Early stopping ended training before ``max_epochs``: say so on the bar and as an event."""
    bar.stop_early(f"stopped early at epoch {epoch} (best {best_epoch})")
    events().emit("stopped_early", phase=phase, epoch=epoch, best_epoch=best_epoch, max_epochs=max_epochs)
