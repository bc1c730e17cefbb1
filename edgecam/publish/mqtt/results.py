"""Per-frame results waiting for the broker: a bounded queue in memory, with an age limit.

Results are a stream (30 a second): while the broker is away the newest
``queue_size`` wait, the oldest are dropped and counted. A result older than
``result_expiry_s`` (since its frame was captured, on the monotonic clock) is
never sent: it is dropped and counted as expired. State changes do not come
here but go to the outbox.

With QoS > 0, paho keeps the results it was handed until their PUBACK. The sink
drops paho's copies at every reconnect (see ``pump.py``); ``requeue_unacked``
puts those results back at the front of this queue, so they are sent again in
order and still subject to the age limit.

Not thread-safe: the sink calls every method with its lock held.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edgecam.publish.mqtt.connection import acknowledged

logger = logging.getLogger("edgecam.publish.mqtt")


@dataclass(frozen=True)
class Queued:
    topic: str
    payload: bytes
    camera: str
    region: str
    captured_mono: float


class ResultQueue:
    def __init__(self, size: int, expiry_s: float) -> None:
        self.size = size
        self.expiry_s = expiry_s
        self.pending: deque[Queued] = deque()
        self._unacked: deque[tuple[mqtt.MQTTMessageInfo, Queued]] = deque()
        self.dropped = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self.pending)

    def push(self, item: Queued) -> None:
        """Queue one result behind the others; beyond ``size`` the oldest is dropped."""
        self.pending.append(item)
        self._trim()

    def pop(self) -> Queued | None:
        return self.pending.popleft() if self.pending else None

    def push_front(self, item: Queued) -> None:
        self.pending.appendleft(item)

    def time_left(self, item: Queued) -> float | None:
        """Seconds before ``item`` expires (None: never); a result at or past 0 is counted
        as expired by the caller and not sent."""
        if not self.expiry_s:
            return None
        left = self.expiry_s - (time.monotonic() - item.captured_mono)
        if left <= 0:
            self.expired += 1
        return left

    def handed(self, info: mqtt.MQTTMessageInfo, item: Queued) -> None:
        """A QoS > 0 result is now paho's until its PUBACK."""
        while self._unacked and acknowledged(self._unacked[0][0]):
            self._unacked.popleft()
        self._unacked.append((info, item))

    def requeue_unacked(self) -> int:
        """At a reconnect: results paho had but the broker never acknowledged go back in front."""
        back = [item for info, item in self._unacked if not acknowledged(info)]
        self._unacked.clear()
        self.pending.extendleft(reversed(back))
        self._trim()
        return len(back)

    def _trim(self) -> None:
        while len(self.pending) > self.size:
            self.pending.popleft()
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                logger.warning("MQTT: queue full (%d), dropping oldest results (%d dropped so far)",
                               self.size, self.dropped)
