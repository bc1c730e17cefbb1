"""The sink's worker thread (``edgecam-mqtt``): what is too slow for paho's network thread.

It republishes everything a subscriber needs after each (re)connect, sends the
outbox, flushes queued results, runs commands and answers Home Assistant. A tick
every half second collects PUBACKs even when no event comes.
"""

from __future__ import annotations

import json
import queue
import random
import time
from typing import TYPE_CHECKING, Any, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edgecam.publish.mqtt import commands
from edgecam.publish.mqtt.discovery import discovery_payload, discovery_topic
from edgecam.publish.mqtt.connection import logger
from edgecam.publish.mqtt.properties import JPEG, JSON, TEXT
from edgecam.publish.mqtt.topics import ONLINE
from edgecam.result import encode_json

if TYPE_CHECKING:
    from edgecam.publish.mqtt.sink import MqttSink

_TICK_S = 0.5  # the worker collects PUBACKs at least this often


def json_bytes(obj: Any) -> bytes:
    return encode_json(obj)


class WorkerMixin:
    """The worker's half of MqttSink (events in, publishes out)."""

    def _run(self: "MqttSink") -> None:
        while not self._stop.is_set():
            timeout = _TICK_S
            if self._discovery_due is not None:
                timeout = max(0.0, min(timeout, self._discovery_due - time.monotonic()))
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                event = ("pump",)  # a tick: acknowledgements may have come in
            try:
                self._dispatch(event)
                if self._discovery_due is not None and time.monotonic() >= self._discovery_due:
                    self._discovery_due = None
                    self._publish_discovery()
            except Exception:  # keep the worker alive whatever a handler does
                logger.exception("MQTT worker: unexpected error handling %s", event[0])

    def refresh(self: "MqttSink") -> None:
        """Publish discovery and state again (the models changed: new labels, new names)."""
        self._post(("refresh",))

    def _dispatch(self: "MqttSink", event: tuple[Any, ...]) -> None:
        if event[0] == "pump":
            self._pump_posted = False
            self._run_pump()
        elif event[0] == "connected":
            self._on_session_up()
        elif event[0] == "refresh":
            state = self._current_state()
            if state is not None and self._connected:
                self._send(self._topics.state, json_bytes(state), 1, True, self._props.get(JSON))
            if self._cfg.discovery.enabled:
                self._publish_discovery()
        elif event[0] == "retained":
            logger.warning("MQTT: ignoring a retained command on %s (%d bytes): commands must not be "
                           "published with the retain flag; clear it with an empty retained message",
                           event[1], event[2])
        elif event[0] == "message":
            topic, payload = event[1], event[2]
            if topic == self._topics.cmd:
                self._run_command(payload)
            elif topic == self._topics.ha_status and payload.strip() == ONLINE.encode():
                low, high = self._discovery_delay_s
                self._discovery_due = time.monotonic() + random.uniform(low, high)

    def _on_session_up(self: "MqttSink") -> None:
        """Everything a subscriber or Home Assistant needs after each (re)connect."""
        self._pump.reset()
        subs = []
        if self._cfg.commands.enabled and self._control is not None:
            subs.append((self._topics.cmd, 1))
        if self._cfg.discovery.enabled:
            subs.append((self._topics.ha_status, 1))
        if subs:
            rc, _ = self._client.subscribe(subs)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                logger.warning("MQTT: subscribe failed: %s", mqtt.error_string(rc))
        self._send(self._topics.status, ONLINE, 1, True, self._props.get(TEXT))
        state = self._current_state()
        if state is not None:
            self._send(self._topics.state, json_bytes(state), 1, True, self._props.get(JSON))
        with self._lock:
            region_states = list(self._region_states.items())
        for topic, (payload, camera, region) in region_states:
            if not self.outbox.has_pending(topic):  # else the outbox sends the newest, retained
                self._send(topic, payload, 1, True, self._props.get(JSON, camera, region))
        if self._cfg.discovery.enabled:
            self._publish_discovery()
        with self._lock:
            self._session_ready = self._connected
        self._run_pump()
        self._flush()

    def _current_state(self: "MqttSink") -> Optional[dict[str, Any]]:
        if self._control is not None:
            try:
                self._last_state = dict(self._control.state())
            except Exception:
                logger.exception("MQTT: control.state() failed; republishing the last known state")
        return self._last_state

    def _publish_discovery(self: "MqttSink") -> None:
        if self._connected:
            payload = discovery_payload(self._config)
            self._send(discovery_topic(self._config), json_bytes(payload), 1, True, self._props.get(JSON))

    def _run_command(self: "MqttSink", payload: bytes) -> None:
        outcome = commands.handle_command(payload, self._control, self._cfg.commands.max_payload_bytes,
                                          self._reject_log)
        if outcome.snapshot is not None:
            self._send(self._topics.snapshot, outcome.snapshot, 1, False, self._props.get(JPEG))
            outcome.reply["topic"] = self._topics.snapshot
        if outcome.state is not None:
            self._last_state = dict(outcome.state)
            self._send(self._topics.state, json_bytes(outcome.state), 1, True, self._props.get(JSON))
        self._send(self._topics.cmd_response, commands.encode_reply(outcome.reply), 1, False,
                   self._props.get(JSON))
