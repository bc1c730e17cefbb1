"""A camera: one source, its ring buffer and its capture thread, under a name.

The daemon makes one per entry of ``cameras:`` (or one named ``default`` for
the single ``source:`` layout). Cameras share nothing but
the ``wake`` callback their ring calls on every new frame, so one lost or
hung camera never holds up another.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from edgecam.buffer.ring import FrameRing
from edgecam.config import CameraConfig
from edgecam.sources.base import FrameSource
from edgecam.sources.capture import CaptureThread
from edgecam.sources.factory import make_source


class Camera:
    def __init__(self, name: str, cfg: CameraConfig, ring_capacity: int,
                 wake: Optional[Callable[[], None]] = None, source: Optional[FrameSource] = None) -> None:
        self.name = name
        self.cfg = cfg
        self.source = source if source is not None else make_source(cfg)
        self.ring = FrameRing(ring_capacity, on_put=wake)
        #: This camera's own: a live reload stops one camera while the others go on.
        self.stop_event = threading.Event()
        self.capture = CaptureThread(self.source, self.ring, self.stop_event, cfg.backoff)
        #: Paused cameras keep capturing (resume is instant) but are not classified.
        self.paused = False

    @property
    def connected(self) -> bool:
        return self.capture.connected

    def start(self) -> None:
        self.capture.start()

    def stop(self) -> None:
        self.ring.close()
        self.capture.stop()
        self.source.close()

    def describe(self) -> str:
        return f"{self.name}: {self.source.describe()}"
