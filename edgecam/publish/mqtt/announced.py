"""What Home Assistant was told, kept across restarts, so that what is gone gets cleaned up.

Every time discovery goes out, the retained topics it stands for (the devices' discovery
topics, each camera's topics, each region's state topic) are compared with the list
written last time: each topic no longer announced gets an empty retained message (an
empty discovery removes the device in Home Assistant; an empty state topic stops feeding
a ghost), then the new list is written. The list is a small JSON file next to the outbox
(``announced-<device_id>.json`` in the state directory), so a camera or region removed
from the config while edgecam was stopped is cleaned up at the next start, and one
removed by a live reload right after it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from edgecam.config import Config
from edgecam.publish.mqtt.outbox import state_directory

logger = logging.getLogger("edgecam.publish.mqtt")

VERSION = 1


def default_path(config: Config) -> Path:
    """Next to the outbox's file (its folder), else in the state directory."""
    cfg = config.mqtt.outbox
    folder = Path(cfg.path).expanduser().parent if cfg.enabled and cfg.path else state_directory()
    return folder / f"announced-{config.device_id}.json"


class Announced:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._topics: set[str] = self._load()
        self._warned = False

    def _load(self) -> set[str]:
        if self.path is None or not self.path.exists():
            return set()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            topics = data["topics"] if isinstance(data, dict) else None
            if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
                raise ValueError("no list of topics")
        except (OSError, ValueError, KeyError) as err:
            logger.warning("MQTT: cannot read %s (%s); what an earlier run announced to Home Assistant "
                           "is not cleaned up", self.path, err)
            return set()
        return set(topics)

    @property
    def topics(self) -> set[str]:
        return set(self._topics)

    def stale(self, now: set[str]) -> list[str]:
        """Topics announced before and not now: to clear (discovery topics first: Home Assistant
        removes the entities before their state topics are emptied)."""
        gone = self._topics - now
        return sorted(gone, key=lambda topic: (not topic.endswith("/config"), topic))

    def remember(self, now: set[str]) -> None:
        """Keep ``now`` as what is announced (in memory, and on disk when it can be)."""
        self._topics = set(now)
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"version": VERSION, "topics": sorted(now)}, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
            self._warned = False
        except OSError as err:
            if not self._warned:
                self._warned = True
                logger.warning("MQTT: cannot write %s (%s); entities removed from the config while edgecam "
                               "is stopped will stay in Home Assistant", self.path, err)
