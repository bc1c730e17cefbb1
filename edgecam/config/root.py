"""The root of the config tree, and how the old single-``source:`` layout maps onto cameras."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgecam.config.cameras import (
    DEFAULT_CAMERA,
    DEFAULT_REGION,
    CameraConfig,
    RegionConfig,
    check_camera_names,
)
from edgecam.config.sections import (
    BufferConfig,
    CollectConfig,
    InferenceConfig,
    ModelConfig,
    MqttConfig,
    PreviewConfig,
    PublishConfig,
    Section,
    SourceConfig,
    StatsConfig,
)


class Config(Section):
    device_id: str = Field(default_factory=lambda: _default_device_id())
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    source: SourceConfig = SourceConfig()
    model: ModelConfig = ModelConfig()
    inference: InferenceConfig = InferenceConfig()
    buffer: BufferConfig = BufferConfig()
    publish: PublishConfig = PublishConfig()
    mqtt: MqttConfig = MqttConfig()
    stats: StatsConfig = StatsConfig()
    preview: PreviewConfig = PreviewConfig()
    collect: CollectConfig = CollectConfig()
    cameras: dict[str, CameraConfig] = {}  # several cameras; replaces source:

    @field_validator("cameras")
    @classmethod
    def _camera_names(cls, cameras: dict[str, CameraConfig]) -> dict[str, CameraConfig]:
        return check_camera_names(cameras)

    @model_validator(mode="after")
    def _source_or_cameras(self) -> "Config":
        if self.cameras and "source" in self.model_fields_set:
            raise ValueError("give either source (one camera) or cameras (several), not both")
        return self

    @field_validator("device_id")
    @classmethod
    def _device_id_is_topic_safe(cls, value: str) -> str:
        if not value or any(c in value for c in "/#+ "):
            raise ValueError("device_id must be non-empty, without '/', '#', '+' or spaces")
        return value

    @property
    def topic_prefix(self) -> str:
        return self.mqtt.topic_prefix or f"edgecam/{self.device_id}"

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edgecam-{self.device_id}"

    @property
    def single_source(self) -> bool:
        """True for the old layout (``source:``, no ``cameras:``): results keep their old topic."""
        return not self.cameras

    def camera_configs(self) -> dict[str, CameraConfig]:
        """Every camera with at least one region, the old layout included.

        ``source:`` becomes the camera ``default``; a camera without regions gets
        ``full`` (the whole frame), which follows ``inference.skip_unchanged`` as a
        motion trigger, exactly what that option did before regions existed."""
        cameras = self.cameras or {DEFAULT_CAMERA: CameraConfig(**self.source.model_dump())}
        return {name: camera if camera.regions else camera.model_copy(
                    update={"regions": {DEFAULT_REGION: self._full_frame_region()}})
                for name, camera in cameras.items()}

    def _full_frame_region(self) -> RegionConfig:
        skip = self.inference.skip_unchanged
        if not skip.enabled:
            return RegionConfig()
        return RegionConfig(trigger="motion", motion_threshold=skip.threshold, max_idle_s=skip.max_skip_s)


def _default_device_id() -> str:
    name = socket.gethostname().split(".")[0] or "edgecam"
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
