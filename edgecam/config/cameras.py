"""Cameras and their regions: ``cameras: {NAME: {<source keys>, regions: {NAME: {...}}}}``.

A camera is everything ``source:`` holds plus its named regions. A region is a
box in fractions of the frame (so it survives a change of resolution), an
optional model of its own, a trigger (every frame, every ``interval_s``, or on
motion inside the box) and ``confirm``: how many results in a row must agree on
the top-1 above ``min_score`` before the region's state changes.

A camera without regions has one, ``full``, covering the whole frame. The old
single-``source:`` config is one camera named ``default`` (see ``Config.camera_configs``).
The same models check ``set`` commands at runtime (edgecam.control.settings).
"""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from edgecam.config.sections import Section, SourceConfig

FULL_FRAME = (0.0, 0.0, 1.0, 1.0)
DEFAULT_CAMERA = "default"
DEFAULT_REGION = "full"
# \A ... \Z, not ^ ... $: "$" also matches before a trailing newline ("door\n" would pass).
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
#: Topic names a device already uses directly under its prefix: no camera may take them.
RESERVED_CAMERA_NAMES = frozenset({"status", "state", "result", "stats", "snapshot", "cmd"})
TRIGGERS = ("every", "interval", "motion")


def check_name(value: str, what: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{what} name {value!r} must be 1-64 letters, digits, '_' or '-' "
                         "(it becomes part of MQTT topics)")
    return value


class BinaryConfig(Section):
    """A two-state view of a region for Home Assistant: ``on`` when its label is one of ``on``."""

    on: list[str] = Field(min_length=1, max_length=100)
    device_class: Optional[str] = Field(None, pattern=r"^[a-z_]{1,40}$")  # e.g. door, occupancy

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: object) -> object:
        """YAML 1.1 reads a bare ``on:`` key as the boolean true: take it as ``on``."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data


class RegionConfig(Section):
    # [x1, y1, x2, y2] as fractions of the frame width/height, (0, 0) top left.
    box: tuple[float, float, float, float] = FULL_FRAME
    model: Optional[str] = None  # ONNX file; default: model.path (the same file shares one session)
    top_k: Optional[int] = Field(None, ge=1, le=20)  # default: model.top_k
    min_score: Optional[float] = Field(None, ge=0, le=1)  # default: publish.min_score
    trigger: Literal["every", "interval", "motion"] = "every"
    interval_s: float = Field(5.0, ge=0.1, le=86400)  # trigger: interval
    motion_threshold: float = Field(4.0, ge=0, le=255)  # trigger: motion (mean abs diff, 0-255)
    max_idle_s: float = Field(60.0, ge=0, le=86400)  # trigger: motion; classify anyway after this long
    confirm: int = Field(3, ge=1, le=100)
    binary: Optional[BinaryConfig] = None  # Home Assistant: a binary sensor besides the label sensor

    @field_validator("box")
    @classmethod
    def _box_inside_frame_with_area(cls, box: tuple[float, float, float, float]) -> tuple[float, ...]:
        x1, y1, x2, y2 = box
        outside = [v for v in box if not 0.0 <= v <= 1.0]
        if outside:
            raise ValueError(f"box values are fractions of the frame from 0 to 1 (got {outside[0]})")
        if x2 <= x1:
            raise ValueError("x2 must be greater than x1")
        if y2 <= y1:
            raise ValueError("y2 must be greater than y1")
        return box


class CameraConfig(SourceConfig):
    regions: dict[str, RegionConfig] = {}
    suggested_area: Optional[str] = Field(None, min_length=1, max_length=100)  # Home Assistant's area

    @model_validator(mode="before")
    @classmethod
    def _uri_is_given(cls, data: object) -> object:
        """A camera without ``uri:`` would silently run the demo clip: say which camera it is."""
        if isinstance(data, dict) and "uri" not in data:
            raise ValueError("every camera needs a uri: a device index (0), a video file, an rtsp/http URL, "
                             "picamera2, or demo for the built-in demo clip")
        return data

    @field_validator("regions")
    @classmethod
    def _region_names(cls, regions: dict[str, RegionConfig]) -> dict[str, RegionConfig]:
        for name in regions:
            check_name(name, "region")
        return regions


def check_camera_names(cameras: dict[str, CameraConfig]) -> dict[str, CameraConfig]:
    """The root config's ``cameras`` keys: topic-safe names, none a reserved topic word."""
    for name in cameras:
        check_name(name, "camera")
        if name in RESERVED_CAMERA_NAMES:
            reserved = ", ".join(sorted(RESERVED_CAMERA_NAMES))
            raise ValueError(f"camera name {name!r} is reserved (one of {reserved})")
    return cameras
