"""Writing a change into the user's config file: comments and order kept, validated whole
before anything is written, atomic, the previous file kept, a concurrent edit never lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgecam.config.writer import DELETE, ConfigFile
from edgecam.errors import ConfigConflict, ConfigError

REPO = Path(__file__).resolve().parent.parent

USER_FILE = """\
# My garage camera. Do not touch the RTSP password!
device_id: garage-pi
cameras:
  garage:
    uri: rtsp://user:pass@cam/stream1   # the main stream
    regions:
      door:
        box: [0.1, 0.2, 0.45, 0.95]  # drawn by hand
        confirm: 3
mqtt:
  host: broker.lan  # the Home Assistant box
"""


def test_an_edit_keeps_every_comment_and_the_key_order(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_FILE)
    config = ConfigFile(path).edit({"cameras.garage.regions.door.box": [0.2, 0.2, 0.6, 0.9],
                                    "cameras.garage.regions.car": {"box": [0.5, 0.3, 1.0, 1.0], "trigger": "motion"}})
    text = path.read_text()
    assert config.cameras["garage"].regions["door"].box == (0.2, 0.2, 0.6, 0.9)
    assert config.cameras["garage"].regions["car"].trigger == "motion"
    for comment in ("# My garage camera. Do not touch the RTSP password!", "# the main stream",
                    "# drawn by hand", "# the Home Assistant box"):
        assert comment in text
    assert text.index("device_id") < text.index("cameras") < text.index("mqtt")
    assert "box: [0.2, 0.2, 0.6, 0.9]" in text  # a box stays one flow-style line
    assert (tmp_path / "config.yaml.bak").read_text() == USER_FILE


def test_the_shipped_config_round_trips_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text((REPO / "config.yaml").read_text())
    text, _ = ConfigFile(path).render({})
    assert text == (REPO / "config.yaml").read_text()


def test_an_edit_that_does_not_validate_writes_nothing_and_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_FILE)
    with pytest.raises(ConfigError, match=r"config.yaml: cameras.garage.regions.door.box: x2 must be greater"):
        ConfigFile(path).edit({"cameras.garage.regions.door.box": [0.9, 0.2, 0.5, 0.95]})
    assert path.read_text() == USER_FILE and not (tmp_path / "config.yaml.bak").exists()


def test_a_deleted_key_and_a_symlinked_file(tmp_path: Path) -> None:
    real = tmp_path / "etc" / "edgecam.yaml"
    real.parent.mkdir()
    real.write_text(USER_FILE)
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    ConfigFile(link).edit({"cameras.garage.regions.door.confirm": DELETE})
    assert link.is_symlink() and "confirm" not in real.read_text() and "# drawn by hand" in real.read_text()


def test_a_file_changed_meanwhile_wins_and_the_edit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_FILE)
    writer = ConfigFile(path)
    text, _ = writer.render({"cameras.garage.regions.door.confirm": 5})
    path.write_text(USER_FILE.replace("broker.lan", "other.lan"))  # the user's editor saved meanwhile
    with pytest.raises(ConfigConflict, match="changed while this change was being made"):
        writer.write(text)
    assert "other.lan" in path.read_text()


def test_a_full_disk_is_one_clear_error_and_the_file_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_FILE)
    writer = ConfigFile(path)
    text, _ = writer.render({"cameras.garage.regions.door.confirm": 5})

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # what a full SD card does to the write
    with pytest.raises(ConfigError, match="cannot write the config file: No space left on device"):
        writer.write(text)
    monkeypatch.undo()
    assert path.read_text() == USER_FILE
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temp file left behind


def test_a_region_for_the_single_camera_moves_source_under_cameras(tmp_path: Path) -> None:
    """A config in the one-camera layout (``source:``) gets a region from the web page: its
    camera is ``default``, so ``source:`` becomes ``cameras.default`` with its comments."""
    path = tmp_path / "config.yaml"
    path.write_text("# my camera\nsource:\n  uri: 0  # the USB one\n  fps: 10\nmqtt:\n  enabled: false\n")
    config = ConfigFile(path).edit({"cameras.default.regions.door.box": [0.1, 0.2, 0.5, 0.9]})
    text = path.read_text()
    assert "source:" not in text and "# the USB one" in text and "# my camera" in text
    camera = config.cameras["default"]
    assert (camera.uri, camera.fps, camera.regions["door"].box) == ("0", 10.0, (0.1, 0.2, 0.5, 0.9))


def test_a_file_without_a_source_keeps_running_the_demo_when_it_gets_a_region(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("mqtt:\n  enabled: false\n")
    config = ConfigFile(path).edit({"cameras.default.regions.door.box": [0.1, 0.2, 0.5, 0.9]})
    assert config.cameras["default"].uri == "demo" and "door" in config.cameras["default"].regions


def test_another_camera_name_in_a_one_camera_file_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("source:\n  uri: demo\n")
    with pytest.raises(ConfigError, match=r"cameras\.garage"):
        ConfigFile(path).edit({"cameras.garage.regions.door.box": [0.1, 0.2, 0.5, 0.9]})
    assert path.read_text() == "source:\n  uri: demo\n"
