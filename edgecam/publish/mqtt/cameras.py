"""Each camera's retained topics for Home Assistant, derived from the daemon's state.

From every state the daemon publishes (``DaemonControl.state()``: on every change, when a
source connects or is lost, and at least every stats interval):

* ``<prefix>/<cam>/connected``: ``ON`` while its source delivers frames, else ``OFF``;
* ``<prefix>/<cam>/running``: ``OFF`` while it is paused (alone or with every camera);
* ``<prefix>/<cam>/availability``: ``online`` when both are ON, else ``offline``: the region
  sensors follow it, so a lost or paused camera shows them unavailable.

Only what changed is sent (retained, QoS 1); everything is sent again after a reconnect.
Commands from Home Assistant's switch and button (``running/set``, ``snapshot/press``)
become the ordinary ``pause`` / ``resume`` / ``snapshot`` commands (``ha_command``).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from edgecam.publish.mqtt.topics import OFFLINE, ONLINE, Topics

SUBSCRIBED_LEAVES = ("running/set", "snapshot/press")


class CameraTopics:
    def __init__(self, topics: Topics) -> None:
        self._topics = topics
        self._lock = threading.Lock()  # the publisher thread updates, the delivery worker reads
        self._current: dict[str, str] = {}

    def derive(self, state: dict[str, Any]) -> dict[str, str]:
        """topic -> payload for every camera in ``state``."""
        out: dict[str, str] = {}
        everything_paused = bool(state.get("paused"))
        for camera, cam in (state.get("cameras") or {}).items():
            cam = cam or {}
            connected = bool(cam.get("connected"))
            running = not (everything_paused or cam.get("paused"))
            out[self._topics.camera(camera, "connected")] = "ON" if connected else "OFF"
            out[self._topics.camera(camera, "running")] = "ON" if running else "OFF"
            out[self._topics.camera(camera, "availability")] = ONLINE if connected and running else OFFLINE
        return out

    def update(self, state: dict[str, Any]) -> list[tuple[str, str]]:
        """Remember ``state``'s topics; returns those whose payload changed (to send now)."""
        derived = self.derive(state)
        with self._lock:
            changed = [(topic, payload) for topic, payload in derived.items() if self._current.get(topic) != payload]
            self._current.update(derived)
        return changed

    def current(self) -> list[tuple[str, str]]:
        """Everything derived so far (after a reconnect: send it all again)."""
        with self._lock:
            return list(self._current.items())

    def forget(self, topics: list[str]) -> None:
        """Topics of cameras removed from the config (their retained messages are cleared)."""
        with self._lock:
            for topic in topics:
                self._current.pop(topic, None)


def subscriptions(topics: Topics) -> list[tuple[str, int]]:
    return [(topics.camera("+", leaf), 1) for leaf in SUBSCRIBED_LEAVES]


def ha_command(topics: Topics, topic: str, payload: bytes) -> bytes | None:
    """The JSON command for a message from Home Assistant's switch or button, or None when
    ``topic`` is not one of theirs (an unknown payload becomes a command the daemon refuses)."""
    camera = topics.camera_of(topic, "running/set")
    if camera is not None:
        word = payload.strip().upper()
        cmd = {b"ON": "resume", b"OFF": "pause"}.get(word, f"switch payload {word[:20]!r}")
        return json.dumps({"cmd": cmd, "camera": camera, "id": "homeassistant"}).encode()
    camera = topics.camera_of(topic, "snapshot/press")
    if camera is not None:
        return json.dumps({"cmd": "snapshot", "camera": camera, "id": "homeassistant"}).encode()
    return None
