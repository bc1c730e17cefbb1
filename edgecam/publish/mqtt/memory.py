"""Each region's last debounced state, kept across restarts.

A restart must not rewrite history: Home Assistant's "open for X minutes" reads the
state's ``since``. The MQTT sink writes every region state it publishes into a small JSON
file next to the outbox (``regions-<device_id>.json``, replaced atomically; state changes
are rare: debounced). At start the daemon gives each region its remembered state back,
when the region's model still has that label, and republishes it with its original
``since`` and ``previous``; the next confirmed label that differs is an ordinary change.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from edgecam.config import Config
from edgecam.publish.mqtt.announced import default_path as announced_path

logger = logging.getLogger("edgecam.publish.mqtt")


def default_path(config: Config) -> Path:
    return announced_path(config).with_name(f"regions-{config.device_id}.json")


class RegionMemory:
    """``camera/region`` -> the state payload last published (RegionState.to_payload())."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()  # guards _states
        self._write_lock = threading.Lock()  # one writer of the file at a time
        self._states: dict[str, dict[str, Any]] = self._load()
        self._warned = False

    def _load(self) -> dict[str, dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise ValueError("not an object of region states")
        except (OSError, ValueError) as err:
            logger.warning("MQTT: cannot read %s (%s); regions start without their last state", self.path, err)
            return {}
        return data

    def states(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {key: dict(value) for key, value in self._states.items()}

    def remember(self, state: dict[str, Any]) -> None:
        """Keep one region's new state (from the publisher thread)."""
        with self._lock:
            self._states[f"{state.get('camera')}/{state.get('region')}"] = dict(state)
        self._write()

    def keep_only(self, keys: set[str]) -> None:
        """Forget regions no longer configured (``camera/region`` keys): one added again later
        under the same name starts afresh."""
        with self._lock:
            gone = set(self._states) - keys
            for key in gone:
                del self._states[key]
        if gone:
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        with self._write_lock:  # (the publisher thread and the changes worker both write)
            with self._lock:
                text = json.dumps(self._states, indent=1, sort_keys=True)
            self._write_text(self.path, text)

    def _write_text(self, path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as err:
            if not self._warned:
                self._warned = True
                logger.warning("MQTT: cannot write %s (%s); a restart republishes regions as new states",
                               path, err)
