"""Commands, the work of the ``edgecam-mqtt-cmd`` worker: one at a time, off the thread that
delivers state changes, so a flood of commands (each may take the daemon a while: a
capture, a reload) delays only other commands.

Its queue is bounded (``mqtt.commands.queue_size``): a command that finds it full is
answered at once from paho's network thread with a "busy" error (QoS 0, so it never
takes a place in paho's queue that a state change needs). Every rejection is counted
by kind and logged at most once per kind every 10 s (``rejects.py``). Names of cameras
and regions are checked against the daemon's state before the daemon is asked, so
"unknown camera or region" is its own kind and costs the daemon nothing.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from edgecam.config import CommandsConfig
from edgecam.control.protocol import DaemonControl
from edgecam.publish.mqtt import commands
from edgecam.publish.mqtt.commands import Command, CommandError
from edgecam.publish.mqtt.delivery import StateCache
from edgecam.publish.mqtt.link import Link
from edgecam.publish.mqtt.properties import JPEG, JSON, MessageProperties
from edgecam.publish.mqtt.rejects import RejectLog
from edgecam.publish.mqtt.topics import Topics
from edgecam.publish.mqtt.worker import Event
from edgecam.result import encode_json

logger = logging.getLogger("edgecam.publish.mqtt")

TARGET_REFRESH_S = 1.0  # a miss reloads the daemon's cameras and regions at most this often


class Targets:
    """The cameras and regions a command may name, from the daemon's state (reloaded on a
    miss, at most once a second: a flood of unknown names never makes the daemon rebuild
    its state for each one)."""

    def __init__(self, control: DaemonControl) -> None:
        self._control = control
        self._regions: dict[str, set[str]] = {}
        self._loaded = float("-inf")

    def check(self, command: Command) -> None:
        """Raise CommandError (kind "target") for a camera or region the daemon does not have."""
        if command.camera is None:
            return
        if not self._known(command.camera, command.region):
            self._reload()
            if not self._regions:
                return  # still starting (no camera built yet): the daemon answers, once it has them
            if not self._known(command.camera, command.region):
                # (worded as the daemon words it)
                if command.camera not in self._regions:
                    message = f"no camera named {command.camera!r} (cameras: {', '.join(self._regions) or 'none'})"
                else:
                    regions = ", ".join(sorted(self._regions[command.camera])) or "none"
                    message = f"camera {command.camera} has no region named {command.region!r} (regions: {regions})"
                raise CommandError(message, command.cmd, command.id, "target")

    def _known(self, camera: str, region: str | None) -> bool:
        regions = self._regions.get(camera)
        return regions is not None and (region is None or region in regions)

    def _reload(self) -> None:
        now = time.monotonic()
        if now - self._loaded < TARGET_REFRESH_S:
            return
        self._loaded = now
        cameras = self._control.state().get("cameras") or {}
        self._regions = {name: set((camera or {}).get("regions") or {}) for name, camera in cameras.items()}


class CommandHandler:
    """Runs one command event at a time and publishes what it must: the reply, a snapshot,
    the new state. Events: ``("command", payload)`` and ``("retained", topic, size)``."""

    def __init__(self, cfg: CommandsConfig, control: DaemonControl | None, link: Link, topics: Topics,
                 props: MessageProperties, state: StateCache, reject_log: RejectLog,
                 camera_images: bool = False) -> None:
        """``camera_images``: a snapshot of a named camera is also kept, retained, on
        ``<prefix>/<camera>/snapshot`` (Home Assistant's image entity)."""
        self._cfg = cfg
        self._control = control
        self._link = link
        self._topics = topics
        self._props = props
        self._state = state
        self.rejects = reject_log
        self._targets = Targets(control) if control is not None else None
        self._camera_images = camera_images
        self.handled = 0

    def handle(self, event: Event) -> None:
        if event[0] == "retained":
            # A command someone published with the retain flag would run again at every
            # start (a retained "pause" pauses every boot): never act on it.
            self.rejects("retained", f"ignoring a retained command on {event[1]} ({event[2]} bytes): commands "
                         "must not be published with the retain flag; clear it with an empty retained message")
            return
        outcome = commands.handle_command(event[1], self._control, self._cfg.max_payload_bytes, self.rejects,
                                          self._check)
        self.handled += 1
        if outcome.snapshot is not None:
            self._link.send(self._topics.snapshot, outcome.snapshot, 1, False, self._props.get(JPEG))
            outcome.reply["topic"] = self._topics.snapshot
            camera = outcome.reply.get("camera")
            if self._camera_images and isinstance(camera, str):
                self._link.send(self._topics.camera(camera, "snapshot"), outcome.snapshot, 1, True,
                                self._props.get(JPEG))
        if outcome.state is not None:
            self._state.remember(outcome.state)
            self._link.send(self._topics.state, encode_json(outcome.state), 1, True, self._props.get(JSON))
        self._link.send(self._topics.cmd_response, commands.encode_reply(outcome.reply), 1, False,
                        self._props.get(JSON))

    def _check(self, command: Command) -> None:
        """What the daemon must not even be asked: config writes when they are off, names it lacks."""
        if command.cmd == "config" and not self._cfg.config_writes:
            raise CommandError("config writes over MQTT are off (mqtt.commands.config_writes: false): anyone who "
                               "can publish on the broker could rewrite the config", command.cmd, command.id, "refused")
        if self._targets is not None:
            self._targets.check(command)

    def idle(self) -> None:
        self.rejects.flush()

    def busy(self, payload: bytes, waiting: int) -> None:
        """The queue is full (paho's network thread): answer at once, QoS 0, and count it."""
        reply: dict[str, Any] = {"ok": False, "error": f"busy: {waiting} commands are waiting; this one was "
                                                       "dropped, try again later"}
        reply.update(_echo(payload, self._cfg.max_payload_bytes))
        self.rejects("busy", f"{waiting} commands waiting; dropped one")
        self._link.send(self._topics.cmd_response, commands.encode_reply(reply), 0, False, self._props.get(JSON))

    def counters(self) -> dict[str, Any]:
        return {"handled": self.handled, "rejected": dict(self.rejects.counts)}


def _echo(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """The ``cmd`` and ``id`` of a command, when they can be read cheaply and are sane."""
    if len(payload) > max_bytes:
        return {}
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(obj, dict):
        return {}
    echo = {}
    if obj.get("cmd") in commands.COMMANDS:
        echo["cmd"] = obj["cmd"]
    cid = obj.get("id")
    plain_int = isinstance(cid, int) and not isinstance(cid, bool)
    if plain_int or (isinstance(cid, str) and len(cid) <= commands.MAX_ID_CHARS):
        echo["id"] = cid
    return echo

