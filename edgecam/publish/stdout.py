"""The stdout sink: one compact JSON object per result, one per line.

It is the default when MQTT is disabled; logs go to stderr, so stdout stays
machine-readable (`edgecam run --no-mqtt | jq .top[0].label`).

A reader that stops reading (a full pipe) must not wedge the publisher, nor the
shutdown: each line is written straight to the file descriptor once ``poll``
says it fits, with a deadline of ``write_timeout_s``. A line that misses it is
dropped and counted, the sink reports itself stalled (``problem()``: /health
and the watchdog see it), and later lines are tried without waiting until the
reader catches up. Lines up to PIPE_BUF (4096) bytes are written atomically,
so a reader never sees half a line. Nothing is buffered in ``sys.stdout``,
so exiting never blocks on flushing it.
"""

from __future__ import annotations

import io
import logging
import os
import select
import sys
import time
from typing import TextIO

from edgecam.publish.sink import Sink
from edgecam.result import Result, encode_json

log = logging.getLogger(__name__)

WRITE_TIMEOUT_S = 1.0


class StdoutSink(Sink):
    name = "stdout"

    def __init__(self, stream: TextIO | None = None, write_timeout_s: float = WRITE_TIMEOUT_S) -> None:
        self._stream = stream or sys.stdout
        self._fd = _fileno(self._stream)
        self._timeout = write_timeout_s
        self._stalled_since: float | None = None
        self._closed = False  # the reader went away for good (EPIPE)
        self.dropped = 0

    def publish_result(self, result: Result) -> None:
        line = encode_json(result.to_payload()).decode("utf-8") + "\n"
        if self._closed:
            return
        if self._fd is None:
            self._stream.write(line)  # an in-memory stream (tests): cannot block
            self._stream.flush()
            return
        self._write(line.encode("utf-8"))

    def problem(self) -> str | None:
        since = self._stalled_since
        if since is None:
            return None
        return (f"stdout is not being read (for {time.monotonic() - since:.0f} s; "
                f"{self.dropped} result(s) dropped)")

    def _write(self, data: bytes) -> None:
        timeout = 0.0 if self._stalled_since is not None else self._timeout
        if not _writable(self._fd, timeout):  # type: ignore[arg-type]
            self.dropped += 1
            if self._stalled_since is None:
                self._stalled_since = time.monotonic()
                log.warning("stdout: the reader is not reading; dropping results until it does")
            return
        try:
            os.write(self._fd, data)  # type: ignore[arg-type]
        except BrokenPipeError:
            # The reader went away (e.g. `| head`): nothing left to deliver to.
            self._closed = True
            return
        if self._stalled_since is not None:
            log.info("stdout: the reader is reading again (%d result(s) were dropped)", self.dropped)
            self._stalled_since = None


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, io.UnsupportedOperation, ValueError):
        return None


def _writable(fd: int, timeout_s: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    events = poller.poll(int(timeout_s * 1000))
    return any(mask & (select.POLLOUT | select.POLLERR | select.POLLHUP) for _, mask in events)
