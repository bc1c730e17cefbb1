"""A plain paho subscriber that records what arrives on a real broker, per topic."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgecam.bench.broker import Broker


@dataclass(frozen=True)
class Message:
    payload: bytes
    retain: bool
    at: float  # time.monotonic() on arrival
    props: Any = None  # MQTT 5 properties (collectors with protocol="5")

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A paho subscriber recording every message per topic."""

    def __init__(self, broker: Broker, topics: list[str], *, username: Optional[str] = None,
                 password: Optional[str] = None, ca_cert: Optional[Path] = None, timeout_s: float = 10.0,
                 protocol: str = "3.1.1", client_id: Optional[str] = None, session_expiry_s: int = 0) -> None:
        self._messages: dict[str, list[Message]] = defaultdict(list)
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.v5 = protocol == "5"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"collector-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        if ca_cert:
            self.client.tls_set(ca_certs=str(ca_cert))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        props = None
        if session_expiry_s:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry_s
        if self.v5:
            self.client.connect(broker.host, broker.port, keepalive=30, clean_start=False, properties=props)
        else:
            self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        if not self._subscribed.wait(timeout_s):
            raise AssertionError(f"collector could not subscribe to {topics}")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._messages[msg.topic].append(Message(bytes(msg.payload), bool(msg.retain), time.monotonic(),
                                                     msg.properties if self.v5 else None))
            self._cond.notify_all()

    def messages(self, topic: str) -> list[Message]:
        with self._cond:
            return list(self._messages[topic])

    def wait_for(self, topic: str, count: int = 1, timeout: float = 10.0) -> list[Message]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages[topic]) >= count, timeout):
                got = {t: len(m) for t, m in self._messages.items()}
                raise AssertionError(f"waited {timeout}s for {count} message(s) on {topic}; got {got}")
            return list(self._messages[topic])

    def wait_payload(self, topic: str, payload: bytes, timeout: float = 10.0) -> Message:
        """The first message on ``topic`` with exactly this payload."""
        with self._cond:
            found: list[Message] = []

            def seen() -> bool:
                found[:] = [m for m in self._messages[topic] if m.payload == payload]
                return bool(found)

            if not self._cond.wait_for(seen, timeout):
                raise AssertionError(f"no {payload!r} on {topic} within {timeout}s: "
                                     f"{[m.payload[:40] for m in self._messages[topic]]}")
            return found[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
