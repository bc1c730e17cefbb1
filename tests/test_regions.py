"""Regions on their own: config rules and messages, boxes to pixels, triggers, debouncing."""

from __future__ import annotations

import numpy as np
import pytest

from edgecam.config import Config, RegionConfig, parse_config
from edgecam.control.settings import validate_region_update
from edgecam.errors import ConfigError
from edgecam.model.types import Label
from edgecam.regions.debounce import Debouncer
from edgecam.regions.region import Region, pixel_box, resolve
from edgecam.regions.trigger import Trigger


def camera(**regions) -> dict:
    return {"cameras": {"garage": {"uri": "0", "regions": regions}}}


@pytest.mark.parametrize("data, message", [
    (camera(door={"box": [0.5, 0.1, 0.4, 0.9]}), "cameras.garage.regions.door.box: x2 must be greater than x1"),
    (camera(door={"box": [0.1, 0.5, 0.4, 0.5]}), "cameras.garage.regions.door.box: y2 must be greater than y1"),
    (camera(door={"box": [-0.1, 0, 0.4, 1]}), "cameras.garage.regions.door.box: box values are fractions of the frame "
                                              "from 0 to 1 (got -0.1)"),
    (camera(door={"box": [0.1, 0, 1.2, 1]}), "(got 1.2)"),
    (camera(door={"box": [0.1, 0.2, 0.3]}), "cameras.garage.regions.door.box"),
    (camera(door={"confirm": 0}), "cameras.garage.regions.door.confirm: Input should be greater than or equal to 1"),
    (camera(door={"trigger": "sometimes"}), "cameras.garage.regions.door.trigger: Input should be 'every', "
                                            "'interval' or 'motion'"),
    (camera(door={"interval_s": 0.01}), "cameras.garage.regions.door.interval_s"),
    (camera(door={"colour": "red"}), "cameras.garage.regions.door.colour: unknown key"),
    (camera(**{"front door": {}}), "cameras.garage.regions: region name 'front door' must be"),
    ({"cameras": {"state": {"uri": "0"}}}, "cameras: camera name 'state' is reserved"),
    ({"cameras": {"a": {"uri": "0"}}, "source": {"uri": "1"}},
     "give either source (one camera) or cameras (several), not both"),
])
def test_region_config_errors_name_the_whole_key_path(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "cams.yaml")
    assert str(info.value).startswith("cams.yaml: ") and message in str(info.value), str(info.value)


def test_the_single_source_layout_is_camera_default_with_region_full() -> None:
    config = parse_config({"source": {"uri": "clip.mp4", "fps": 12}, "model": {"top_k": 5},
                           "inference": {"skip_unchanged": {"enabled": True, "threshold": 3.5, "max_skip_s": 7}}})
    cameras = config.camera_configs()
    assert list(cameras) == ["default"] and config.single_source
    assert cameras["default"].uri == "clip.mp4" and cameras["default"].fps == 12
    full = resolve(cameras["default"].regions["full"], config)
    assert full.box == (0, 0, 1, 1) and full.top_k == 5 and full.model == config.model.path
    # skip_unchanged is the full region's motion trigger, with the same threshold and maximum skip
    assert (full.trigger, full.motion_threshold, full.max_idle_s) == ("motion", 3.5, 7)


def test_cameras_without_regions_get_full_and_nested_regions_are_allowed() -> None:
    config = parse_config({"cameras": {
        "a": {"uri": "0"},
        "b": {"uri": "1", "regions": {"drive": {"box": [0, 0.2, 1, 1]}, "door": {"box": [0.1, 0.3, 0.3, 0.9]}}}}})
    cameras = config.camera_configs()
    assert list(cameras["a"].regions) == ["full"] and list(cameras["b"].regions) == ["drive", "door"]
    assert not config.single_source


def test_boxes_map_to_pixels_and_crop_views() -> None:
    assert pixel_box((0.25, 0.5, 0.75, 1.0), 640, 480) == (160, 240, 480, 480)
    assert pixel_box((0.999, 0.999, 1.0, 1.0), 100, 100) == (99, 99, 100, 100)  # never empty
    frame = np.arange(480 * 640 * 3, dtype=np.uint32).reshape(480, 640, 3).astype(np.uint8)
    config = Config()
    region = Region("cam", "r", resolve(RegionConfig(box=(0.25, 0.5, 0.75, 1.0)), config))
    crop = region.crop(frame)
    assert crop.shape == (240, 320, 3) and np.shares_memory(crop, frame)
    assert np.array_equal(crop, frame[240:480, 160:480])


def _top(label: str, score: float) -> tuple[Label, ...]:
    return (Label(label, hash(label) % 1000, score), Label("other", 999, 1 - score))


def test_debouncing_a_scripted_sequence_gives_exactly_the_expected_changes() -> None:
    debouncer = Debouncer(confirm=3, min_score=0.5)
    script = [("cat", .9), ("cat", .8), ("dog", .9), ("cat", .9), ("cat", .9), ("cat", .7),  # cat confirmed
              ("cat", .9), ("dog", .9), ("dog", .4), ("dog", .9), ("dog", .9),  # low score breaks the streak
              ("dog", .9),  # dog confirmed (3 in a row above 0.5)
              ("dog", .9), ("cat", .9), ("cat", .9), ("dog", .9)]  # no change
    changes = []
    for step, (label, score) in enumerate(script):
        state = debouncer.update(_top(label, score), 1000.0 + step)
        if state is not None:
            changes.append((step, state.label, state.previous, state.since_wall))
    assert changes == [(5, "cat", None, 1005.0), (11, "dog", "cat", 1011.0)]
    assert debouncer.state is not None and debouncer.state.label == "dog"


def test_confirm_1_follows_every_top1_above_min_score() -> None:
    debouncer = Debouncer(confirm=1, min_score=0.0)
    labels = ["a", "a", "b", "a", "a"]
    states = [debouncer.update(_top(label, 0.6), 0.0) for label in labels]
    assert [s.label if s else None for s in states] == ["a", None, "b", "a", None]


def test_interval_trigger_is_due_once_per_interval() -> None:
    trigger = Trigger(RegionConfig(trigger="interval", interval_s=2.0))
    crop = np.zeros((10, 10, 3), np.uint8)
    assert trigger.due(100.0)
    trigger.classified(crop, 100.0)
    assert not trigger.due(101.9) and trigger.due(102.0)


def test_motion_trigger_wants_changed_crops_and_an_idle_refresh() -> None:
    trigger = Trigger(RegionConfig(trigger="motion", motion_threshold=4.0, max_idle_s=30.0))
    still = np.full((64, 64, 3), 100, np.uint8)
    assert trigger.wants(still, 0.0)  # nothing classified yet
    trigger.classified(still, 0.0)
    assert not trigger.wants(still + 2, 1.0)  # mean diff 2 < 4
    assert trigger.wants(still + 10, 1.0)
    assert trigger.wants(still, 31.0)  # max_idle_s: a static scene still reports


def test_region_settings_at_runtime_follow_the_config_rules() -> None:
    current = resolve(RegionConfig(), Config())
    changed = validate_region_update(current, {"confirm": 5, "trigger": "interval", "interval_s": 2},
                                     "cameras.a.regions.r")
    assert (changed.confirm, changed.trigger, changed.interval_s) == (5, "interval", 2.0)
    for bad, message in [({"confirm": 0}, "confirm: Input should be greater than or equal to 1"),
                         ({"confirm": "3"}, "confirm must be an integer, got str"),
                         ({"min_score": float("nan")}, "min_score must be a finite number"),
                         ({"box": [0, 0, 1, 1]}, "unknown setting 'box'"),
                         ({"trigger": "never"}, "trigger: Input should be 'every', 'interval' or 'motion'")]:
        with pytest.raises(ConfigError, match=message):
            validate_region_update(current, bad, "cameras.a.regions.r")
