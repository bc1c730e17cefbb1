"""Names are checked against the whole string: ``$`` also matches before a trailing newline,
so "open\\n" passed as a label (and became a second class), a camera or a command target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecam.config import parse_config
from edgecam.config.cameras import NAME_PATTERN, check_name
from edgecam.dataset.store import DatasetError, RegionStore, check_label
from edgecam.errors import ConfigError
from edgecam.publish.mqtt.commands import CommandError, parse_command

TRAILING = ["open\n", "door\n", "a\r\n"]


@pytest.mark.parametrize("name", TRAILING)
def test_a_trailing_newline_is_not_a_name(name: str) -> None:
    assert NAME_PATTERN.match(name) is None and NAME_PATTERN.fullmatch(name) is None
    with pytest.raises(ValueError, match="name"):
        check_name(name, "region")
    with pytest.raises(DatasetError, match="label"):
        check_label(name)


def test_labels_with_a_newline_never_become_a_folder(tmp_path: Path) -> None:
    store = RegionStore(tmp_path / "cam" / "door", max_files=10, max_mb=10, min_distance=0)
    crop = np.full((32, 32, 3), 120, np.uint8)
    with pytest.raises(DatasetError, match="label"):
        store.capture(crop, "open\n")
    first = store.capture(crop, "open")
    with pytest.raises(DatasetError, match="label"):
        store.move([first.id], "closed\n")
    (tmp_path / "cam" / "door" / "open\n").mkdir()  # made by hand: not a class
    assert [s.label for s in store.samples()] == ["open"]


def test_config_refuses_camera_and_region_names_with_a_newline() -> None:
    with pytest.raises(ConfigError, match="camera name"):
        parse_config({"cameras": {"garage\n": {"uri": "demo"}}}, "config.yaml")
    with pytest.raises(ConfigError, match="region name"):
        parse_config({"cameras": {"garage": {"uri": "demo", "regions": {"door\n": {}}}}}, "config.yaml")


@pytest.mark.parametrize("key", ["camera", "region", "label"])
def test_command_targets_with_a_newline_are_refused(key: str) -> None:
    obj = {"cmd": "capture", "camera": "garage", "region": "door", "label": "open"}
    obj[key] += "\n"
    with pytest.raises(CommandError, match=key):
        parse_command(json.dumps(obj).encode())
