"""A change to the config file as it arrives from the web app or MQTT, checked before it
reaches the config writer: ``{"set": {KEY PATH: value}, "delete": [KEY PATH, ...]}``."""

from __future__ import annotations

import re
from typing import Any

from edgecam.config.writer import DELETE
from edgecam.errors import ConfigError

MAX_EDITS = 64
KEY_PATH = re.compile(r"[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,8}")


def parse_edits(data: Any) -> dict[str, Any]:
    """dotted key path -> value (or DELETE). Raises ConfigError naming what is wrong."""
    if not isinstance(data, dict):
        raise ConfigError("a config change is an object: {\"set\": {...}, \"delete\": [...]}")
    unknown = set(data) - {"set", "delete"}
    if unknown:
        raise ConfigError(f"unknown key(s): {', '.join(sorted(map(str, unknown)))[:100]} (expected set, delete)")
    sets, deletes = data.get("set", {}), data.get("delete", [])
    if not isinstance(sets, dict) or not isinstance(deletes, list):
        raise ConfigError("set must be an object and delete a list of key paths")
    edits: dict[str, Any] = dict(sets)
    edits.update({key: DELETE for key in deletes if isinstance(key, str)})
    if not edits or len(edits) > MAX_EDITS or len(deletes) + len(sets) != len(edits):
        raise ConfigError(f"give 1 to {MAX_EDITS} distinct key paths")
    bad = [key for key in edits if not isinstance(key, str) or not KEY_PATH.fullmatch(key)]
    if bad:
        raise ConfigError(f"not a key path: {str(bad[0])[:80]!r} (e.g. cameras.garage.regions.door.box)")
    return edits
