"""The FrameSource interface every camera/file/demo source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class FrameSource(ABC):
    """A blocking producer of BGR uint8 frames (H x W x 3).

    The capture thread owns the source: it calls ``open()``, then ``read()`` in
    a loop, and ``close()`` at the end or before a retry. Sequence numbers and
    capture timestamps are stamped by the capture thread right after ``read()``
    returns, so every source gets them the same way.

    ``read()`` raises ``SourceError`` when the source is lost (the capture
    thread closes it and retries with backoff) and ``EndOfStream`` when a
    non-looping file ends.
    """

    #: Short id used in results and logs, e.g. "usb0", "demo", "file:clip.mp4".
    source_id: str = "source"

    @abstractmethod
    def open(self) -> None:
        """Acquire the device/file/stream. Raises SourceError on failure."""

    @abstractmethod
    def read(self) -> np.ndarray:
        """Block until the next frame and return it (BGR uint8, HxWx3)."""

    @abstractmethod
    def close(self) -> None:
        """Release the device. Safe to call twice or after a failed open."""

    def stuck_for(self) -> float:
        """Seconds a blocking call into the device has been running (0 when none).

        Sources whose calls can hang in native code run them on a TimedCaller and
        report it here; the daemon stops the watchdog once this passes its limit."""
        return 0.0

    def describe(self) -> str:
        """Human-readable description for logs and the state topic."""
        return self.source_id
