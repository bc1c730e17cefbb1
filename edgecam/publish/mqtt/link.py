"""The broker link: the paho client, what we know of its connection, and how we publish on it.

Three flags say how far the connection is:

* ``connected``: the broker session is up (CONNACK accepted);
* ``session_ready``: ... AND the reconnect republishing is done: the outbox may flow;
* ``online``: ... AND the result queue is flushed: results go straight to paho.

``lock`` guards the flags, and keeps a publish from slipping between a reconnect and
the republishing that follows it. It is taken before paho's own locks; paho callbacks
may take it, except on_publish (paho calls that one holding its message lock, which
publish() takes after ours).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

logger = logging.getLogger("edgecam.publish.mqtt")


class Link:
    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.connected = False
        self.session_ready = False
        self.online = False
        self.errors = 0  # publishes paho refused for another reason than "not connected"

    def down(self) -> bool:
        """The connection is gone: every flag off. Returns whether it had been up."""
        with self.lock:
            was = self.connected
            self.connected = self.session_ready = self.online = False
        return was

    def publish(self, topic: str, payload: bytes | str, qos: int, retain: bool, props: Any) -> mqtt.MQTTMessageInfo:
        """Hand one message to paho. Never raises: a refusal is logged and in the returned rc."""
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        except (ValueError, OSError) as err:
            logger.warning("MQTT: publish to %s failed: %s", topic, err)
            info = mqtt.MQTTMessageInfo(0)
            info.rc = MQTTErrorCode.MQTT_ERR_UNKNOWN
            self.errors += 1
            return info
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN,
                           MQTTErrorCode.MQTT_ERR_QUEUE_SIZE):
            logger.warning("MQTT: publish to %s failed: %s", topic, mqtt.error_string(info.rc))
        return info

    def send(self, topic: str, payload: bytes | str, qos: int, retain: bool, props: Any = None) -> MQTTErrorCode:
        return self.publish(topic, payload, qos, retain, props).rc
