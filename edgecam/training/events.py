"""Machine-readable progress (``edgecam train --progress-json``) and cancellation (SIGTERM).

The web app runs training as a child process: it reads one JSON object per line
(``{"event": "epoch", "phase": "head", "epoch": 3, ...}``) from stdout or a file,
and cancels with SIGTERM. Events, in order: ``start``, ``dataset``, ``phase``
(a stage begins), ``progress`` (throttled), ``epoch`` / ``stopped_early`` (per head
or fine-tuning epoch), then exactly one of ``done``, ``error`` or ``cancelled``.

Cancellation raises ``Cancelled``, a BaseException like KeyboardInterrupt, so no
``except Exception`` on the way (onnxruntime's quantizer, our own wrappers) turns
it into an error; temporary files go with their context managers. Once the
outputs are being moved into place (``shielded``), a SIGTERM no longer cancels:
the files are never half replaced, and the run ends with ``done``.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO


class Cancelled(BaseException):
    """Training was asked to stop (SIGTERM)."""


class Events:
    """Writes events as JSON lines to ``stream`` (flushed per line); no stream: does nothing."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.start = time.monotonic()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.stream is not None

    def emit(self, event: str, **fields: Any) -> None:
        if self.stream is None:
            return
        record = {"event": event, "t": round(time.monotonic() - self.start, 2), **fields}
        line = json.dumps(record, default=_plain, allow_nan=False, sort_keys=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def _plain(value: Any) -> Any:
    """numpy scalars and paths as JSON; NaN is not JSON, so it becomes null."""
    if hasattr(value, "item"):
        value = value.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    return str(value)


_current = Events()


def events() -> Events:
    return _current


@contextlib.contextmanager
def emitting(stream: TextIO | None) -> Iterator[Events]:
    """Send this process's training events to ``stream`` while the block runs."""
    global _current
    previous, _current = _current, Events(stream)
    try:
        yield _current
    finally:
        _current = previous


class _CancelState:
    shield_depth = 0
    pending = False


_state = _CancelState()


def _on_signal(signum: int, _frame: Any) -> None:
    if _state.shield_depth:
        _state.pending = True
        return
    raise Cancelled(signal.Signals(signum).name)


@contextlib.contextmanager
def cancel_on_sigterm() -> Iterator[None]:
    """SIGTERM raises Cancelled in the main thread while the block runs."""
    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A SIGTERM arriving inside the block is too late to cancel: it is only noted."""
    _state.shield_depth += 1
    try:
        yield
    finally:
        _state.shield_depth -= 1


def too_late_to_cancel() -> bool:
    """True when a SIGTERM arrived while the outputs were being written."""
    return _state.pending
