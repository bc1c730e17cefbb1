"""What Home Assistant was told, kept across restarts, so that what is gone gets cleaned up.

Every time discovery goes out, the retained topics it stands for (the devices' discovery
topics, each camera's topics, each region's state topic) are compared with the list
written last time: each topic no longer announced gets an empty retained message (an
empty discovery removes the device in Home Assistant; an empty state topic stops feeding
a ghost), then the new list is written. The list is a small JSON file next to the outbox
(``announced-<device_id>.json`` in the state directory), so a camera or region removed
from the config while edgecam was stopped is cleaned up at the next start, and one
removed by a live reload right after it.

A component dropped from a device that stays (a region removed, a binary sensor turned off)
is removed the way Home Assistant asks: listed with its platform only (``{"p": "sensor"}``).
Such stubs are kept in every later message for that device (they cost a few bytes), so a
Home Assistant that was away when the component went still removes it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from edgecam.config import Config
from edgecam.publish.mqtt.outbox import state_directory

logger = logging.getLogger("edgecam.publish.mqtt")

VERSION = 2
Docs = dict[str, dict[str, Any]]  # discovery topic -> device payload


def default_path(config: Config) -> Path:
    """Next to the outbox's file (its folder), else in the state directory."""
    cfg = config.mqtt.outbox
    folder = Path(cfg.path).expanduser().parent if cfg.enabled and cfg.path else state_directory()
    return folder / f"announced-{config.device_id}.json"


class Announced:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._topics: set[str] = set()
        self._components: dict[str, dict[str, str]] = {}  # discovery topic -> unique id -> platform
        self._load()
        self._warned = False

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            topics = data["topics"] if isinstance(data, dict) else None
            if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
                raise ValueError("no list of topics")
            components = data.get("components", {})
            if not isinstance(components, dict) or not all(
                    isinstance(c, dict) and all(isinstance(p, str) for p in c.values()) for c in components.values()):
                raise ValueError("no map of components")
        except (OSError, ValueError, KeyError) as err:
            logger.warning("MQTT: cannot read %s (%s); what an earlier run announced to Home Assistant "
                           "is not cleaned up", self.path, err)
            return
        self._topics, self._components = set(topics), components

    def add_removals(self, docs: Docs) -> None:
        """Add to each device's components, as a platform-only stub, every one it had before
        and has no more (Home Assistant then removes that entity)."""
        for topic, doc in docs.items():
            components = doc.setdefault("cmps", {})
            for uid, platform in self._components.get(topic, {}).items():
                components.setdefault(uid, {"p": platform})

    @property
    def topics(self) -> set[str]:
        return set(self._topics)

    def stale(self, now: set[str]) -> list[str]:
        """Topics announced before and not now: to clear."""
        return sorted(self._topics - now)

    def remember(self, now: set[str], docs: Docs) -> None:
        """Keep ``now`` and the devices' components as what is announced (in memory, and on disk
        when it can be)."""
        self._topics = set(now)
        self._components = {topic: {uid: str(comp.get("p")) for uid, comp in doc.get("cmps", {}).items()}
                            for topic, doc in docs.items()}
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = {"version": VERSION, "topics": sorted(now), "components": self._components}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
            self._warned = False
        except OSError as err:
            if not self._warned:
                self._warned = True
                logger.warning("MQTT: cannot write %s (%s); entities removed from the config while edgecam "
                               "is stopped will stay in Home Assistant", self.path, err)
