"""Typed configuration: one pydantic model tree, loaded from YAML in one place.

``sections`` holds the blocks of config.yaml, ``cameras`` the cameras and their
regions, ``root`` the whole tree, ``loader`` the file reading and its errors,
``model_default`` which model an unset ``model.path`` means.
Import from here: ``from edgecam.config import Config, load_config``.
"""

from edgecam.config.cameras import (
    DEFAULT_CAMERA,
    DEFAULT_REGION,
    FULL_FRAME,
    CameraConfig,
    RegionConfig,
)
from edgecam.config.loader import apply_overrides, format_validation_error, load_config, load_text, parse_config
from edgecam.config.model_default import resolve_default_model
from edgecam.config.root import Config
from edgecam.config.sections import (
    DEFAULT_MODEL_PATH,
    MIN_MAX_FPS,
    OFFLINE_MODEL_PATH,
    BackoffConfig,
    BufferConfig,
    CollectConfig,
    CommandsConfig,
    DiscoveryConfig,
    HttpAuthConfig,
    HttpPreviewConfig,
    InferenceConfig,
    ModelChecksConfig,
    ModelConfig,
    MqttConfig,
    OutboxConfig,
    Picamera2Config,
    PreviewConfig,
    PublishConfig,
    Section,
    SkipUnchangedConfig,
    SourceConfig,
    StatsConfig,
    TlsConfig,
)

__all__ = [
    "DEFAULT_CAMERA", "DEFAULT_MODEL_PATH", "DEFAULT_REGION", "FULL_FRAME", "MIN_MAX_FPS", "OFFLINE_MODEL_PATH",
    "BackoffConfig", "BufferConfig", "CameraConfig", "CollectConfig", "CommandsConfig", "Config", "DiscoveryConfig",
    "HttpAuthConfig", "HttpPreviewConfig", "InferenceConfig", "ModelChecksConfig", "ModelConfig", "MqttConfig",
    "OutboxConfig", "Picamera2Config", "PreviewConfig", "PublishConfig",
    "RegionConfig", "Section", "SkipUnchangedConfig", "SourceConfig", "StatsConfig", "TlsConfig",
    "apply_overrides", "format_validation_error", "load_config", "load_text", "parse_config", "resolve_default_model",
]
