"""Moves outbox entries to the broker in order and forgets each one only on its PUBACK.

Per connection: entries go out oldest first, at most ``window`` unacknowledged
at a time. When the connection drops, the sink throws away paho's own copies
(paho would resend them after the next CONNACK, racing the entries sent after
them) and calls ``reset()``: everything still in the outbox is sent again from
the oldest. QoS 1 is at-least-once, so a subscriber may see an entry twice (the
broker had it, the PUBACK was lost); never out of order, never not at all.

A state topic is retained, and a replay sends old changes: only the newest
pending entry of a topic goes out with the retain flag, so the topic's
retained value always ends as the newest state.

Not thread-safe on its own for ``pump``: the sink calls it with its lock held
(paho publishes must not interleave with a reconnect). ``collect`` and
``reset`` take the pump's own lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edgecam.publish.mqtt.connection import acknowledged
from edgecam.publish.mqtt.outbox import Entry, Outbox

logger = logging.getLogger("edgecam.publish.mqtt")

WINDOW = 64  # outbox entries handed to paho and not yet acknowledged


class OutboxPump:
    def __init__(self, outbox: Outbox, publish: Callable[[Entry, bool], mqtt.MQTTMessageInfo],
                 window: int = WINDOW) -> None:
        self._outbox = outbox
        self._publish = publish
        self.window = window
        self._lock = threading.Lock()
        self._inflight: dict[int, mqtt.MQTTMessageInfo] = {}  # entry id -> paho's handle, in send order
        self._cursor = 0  # the newest entry id handed to paho on this connection
        self.refusals: dict[int, str] = {}  # mid -> reason, from on_publish (MQTT 5 PUBACK failures)
        self.delivered = 0
        self.refused = 0

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def reset(self) -> None:
        """A new connection: send every pending entry again, from the oldest."""
        with self._lock:
            self._inflight.clear()
            self._cursor = 0
            self.refusals.clear()

    def pump(self) -> int:
        """Hand the next entries to paho (caller holds the sink's lock); returns how many."""
        with self._lock:
            room = self.window - len(self._inflight)
            if room <= 0:
                return 0
            sent = 0
            for entry in self._outbox.pending_after(self._cursor, room):
                info = self._publish(entry, entry.retain and self._outbox.is_newest(entry))
                if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    break  # paho's queue is full: this entry goes with a later pump
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    logger.warning("MQTT: outbox entry to %s not sent: %s", entry.topic, mqtt.error_string(info.rc))
                    break
                self._inflight[entry.id] = info
                self._cursor = entry.id
                sent += 1
                if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                    break  # the connection just went; the next one starts over
            return sent

    def collect(self) -> int:
        """Delete the entries the broker acknowledged; returns how many."""
        with self._lock:
            done = [entry_id for entry_id, info in self._inflight.items() if acknowledged(info)]
            refused = []
            for entry_id in done:
                info = self._inflight.pop(entry_id)
                reason = self.refusals.pop(info.mid, None)
                if reason is not None:
                    refused.append((entry_id, reason))
        for entry_id, reason in refused:
            # Sending it again would be refused again (and hold up nothing: later entries go on).
            logger.warning("MQTT: the broker refused outbox entry %d (%s); dropping it", entry_id, reason)
        self._outbox.delete(done)
        self.delivered += len(done) - len(refused)
        self.refused += len(refused)
        return len(done)
