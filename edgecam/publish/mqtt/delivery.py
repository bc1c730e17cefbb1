"""State delivery, the work of the ``edgecam-mqtt`` worker: what is too slow for paho's
network thread and must never wait behind a command.

After each (re)connect it republishes everything a subscriber or Home Assistant
needs (retained ``online``, the state, each region's latest state, discovery,
subscriptions), then lets the outbox flow from its oldest entry, then the queued
results. It moves the outbox to the broker (``pump.py``) whenever something was
added or acknowledged, and at least every half second. It answers Home Assistant's
``online`` with discovery after a random delay (so a fleet does not answer at once).
Each discovery first clears what was announced before and is gone (``announced.py``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edgecam.config import Config
from edgecam.control.protocol import DaemonControl
from edgecam.publish.mqtt import cameras
from edgecam.publish.mqtt.announced import Announced
from edgecam.publish.mqtt.cameras import CameraTopics
from edgecam.publish.mqtt.discovery import Description, announced_topics, documents
from edgecam.publish.mqtt.link import Link
from edgecam.publish.mqtt.outbox import Outbox
from edgecam.publish.mqtt.properties import JPEG, JSON, TEXT, MessageProperties
from edgecam.publish.mqtt.pump import OutboxPump
from edgecam.publish.mqtt.topics import ONLINE, Topics
from edgecam.publish.mqtt.worker import Event
from edgecam.result import encode_json

logger = logging.getLogger("edgecam.publish.mqtt")

TICK_S = 0.5  # acknowledgements are collected at least this often


class StateCache:
    """The daemon's retained state: fresh from ``control.state()`` when there is a control,
    else (or when that fails) the last one published."""

    def __init__(self, control: DaemonControl | None) -> None:
        self._control = control
        self._lock = threading.Lock()  # guards _last (the publisher and both workers set it)
        self._last: dict[str, Any] | None = None

    def remember(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._last = dict(state)

    def current(self) -> dict[str, Any] | None:
        if self._control is not None:
            try:
                self.remember(self._control.state())
            except Exception:
                logger.exception("MQTT: control.state() failed; republishing the last known state")
        with self._lock:
            return self._last


class Delivery:
    """Handles the delivery worker's events: ``("pump",)``, ``("connected",)``, ``("refresh",)``,
    ``("snapshot", camera)`` (a region of it changed state: its image entity gets a new picture)."""

    def __init__(self, config: Config, link: Link, topics: Topics, props: MessageProperties, outbox: Outbox,
                 pump: OutboxPump, state: StateCache, flush_results: Callable[[], None],
                 subscribe_commands: bool, discovery_delay_s: tuple[float, float] = (1.0, 5.0),
                 announced: Announced | None = None, description: Description | None = None,
                 snapshot: Callable[[str], bytes | None] | None = None) -> None:
        self._config = config
        self._link = link
        self._topics = topics
        self._props = props
        self._outbox = outbox
        self._pump = pump
        self._state = state
        self._flush_results = flush_results
        self._subscribe_commands = subscribe_commands
        self._discovery_delay_s = discovery_delay_s
        self._discovery = config.mqtt.discovery.enabled
        self._discovery_due: float | None = None  # set from paho's thread, read here: one float
        self._region_states: dict[str, tuple[bytes, str, str]] = {}  # topic -> latest (payload, camera, region)
        self._region_lock = threading.Lock()  # guards _region_states
        self.cameras = CameraTopics(topics)
        self._camera_lock = threading.Lock()  # one sender of camera topics at a time (in order)
        self._announced = announced or Announced(None)
        self._description = description  # None until the daemon describes what runs (one reference)
        self._snapshot = snapshot  # camera -> its latest annotated JPEG (the daemon's)

    def describe(self, description: Description) -> None:
        """What discovery announces from now on (the worker's next refresh sends it)."""
        self._description = description

    def send_camera_topics(self, state: dict[str, Any] | None = None) -> None:
        """The per-camera topics ``state`` changed (None: all of them, after a reconnect)."""
        if not self._discovery:
            return
        with self._camera_lock:
            messages = self.cameras.current() if state is None else self.cameras.update(state)
            if self._link.connected:
                for topic, payload in messages:
                    self._link.send(topic, payload, 1, True, self._props.get(TEXT))

    # ----------------------------------------------------------- from other threads
    def remember_region_state(self, topic: str, payload: bytes, camera: str, region: str) -> None:
        """The latest state of each region, re-sent after every reconnect."""
        with self._region_lock:
            self._region_states[topic] = (payload, camera, region)

    def ha_online(self) -> None:
        """Home Assistant (re)started: answer with discovery after a random delay."""
        if self._discovery and self._discovery_due is None:
            low, high = self._discovery_delay_s
            self._discovery_due = time.monotonic() + random.uniform(low, high)

    # ----------------------------------------------------------- on the worker
    def handle(self, event: Event) -> None:
        if event[0] == "pump":
            self.run_pump()
        elif event[0] == "connected":
            self._session_up()
        elif event[0] == "refresh":
            self._publish_state()
            if self._discovery:
                self._publish_discovery()
        elif event[0] == "snapshot":
            self._publish_snapshot(event[1])
        self._discovery_if_due()

    def idle(self) -> None:
        self.run_pump()  # acknowledgements may have come in
        self._discovery_if_due()

    def wait_s(self) -> float:
        due = self._discovery_due
        return TICK_S if due is None else max(0.0, min(TICK_S, due - time.monotonic()))

    def run_pump(self) -> None:
        """Forget what the broker acknowledged, then send the next outbox entries."""
        self._pump.collect()
        with self._link.lock:
            if self._link.session_ready:
                self._pump.pump()

    def _session_up(self) -> None:
        """Everything a subscriber or Home Assistant needs after each (re)connect."""
        self._pump.reset()
        subs = []
        if self._subscribe_commands:
            subs.append((self._topics.cmd, 1))
        if self._discovery:
            subs.append((self._topics.ha_status, 1))
            if self._subscribe_commands:
                subs.extend(cameras.subscriptions(self._topics))
        if subs:
            rc, _ = self._link.client.subscribe(subs)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                logger.warning("MQTT: subscribe failed: %s", mqtt.error_string(rc))
        self._link.send(self._topics.status, ONLINE, 1, True, self._props.get(TEXT))
        self._publish_state()
        with self._region_lock:
            region_states = list(self._region_states.items())
        for topic, (payload, camera, region) in region_states:
            if not self._outbox.has_pending(topic):  # else the outbox sends the newest, retained
                self._link.send(topic, payload, 1, True, self._props.get(JSON, camera, region))
        if self._discovery:
            self.send_camera_topics()
            self._publish_discovery()
        with self._link.lock:
            self._link.session_ready = self._link.connected
        self.run_pump()
        self._flush_results()

    def _publish_state(self) -> None:
        state = self._state.current()
        if state is not None and self._link.connected:
            self._link.send(self._topics.state, encode_json(state), 1, True, self._props.get(JSON))

    def _publish_snapshot(self, camera: str) -> None:
        jpeg = self._snapshot(camera) if self._snapshot is not None else None
        if jpeg is not None and self._link.connected:
            self._link.send(self._topics.camera(camera, "snapshot"), jpeg, 1, True, self._props.get(JPEG))

    def _discovery_if_due(self) -> None:
        due = self._discovery_due
        if due is not None and time.monotonic() >= due:
            self._discovery_due = None
            self._publish_discovery()

    def _publish_discovery(self) -> None:
        description = self._description
        if description is None or not self._link.connected:
            return
        docs = documents(description)
        now = announced_topics(description)
        stale = self._announced.stale(now)
        self._announced.add_removals(docs)
        # Home Assistant removes the entities first (removed devices, then dropped components),
        # then their retained states are cleared (an empty state would be an error to an entity).
        for topic in (t for t in stale if t.endswith("/config")):
            self._link.send(topic, b"", 1, True, None)
        for topic, payload in docs.items():
            self._link.send(topic, encode_json(payload), 1, True, self._props.get(JSON))
        for topic in (t for t in stale if not t.endswith("/config")):
            self._link.send(topic, b"", 1, True, None)
        if stale:
            logger.info("MQTT: cleared %d retained topic(s) of cameras and regions no longer configured",
                        len(stale))
            self.cameras.forget(stale)
            with self._region_lock:
                for topic in stale:
                    self._region_states.pop(topic, None)
        self._announced.remember(now, docs)
