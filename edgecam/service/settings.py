"""Runtime settings changes (the MQTT `set` command): validate all, then apply.

Validation reuses the typed config sections, so a runtime change obeys exactly
the same ranges as config.yaml, and a bad value changes nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from edgecam.config import InferenceConfig, PublishConfig
from edgecam.errors import ConfigError

PUBLISH_KEYS = ("policy", "min_score", "change_delta", "heartbeat_s", "interval_hz")
INFERENCE_KEYS = ("max_fps", "smoothing")
SETTABLE_KEYS = PUBLISH_KEYS + INFERENCE_KEYS


def validate_update(publish: PublishConfig, inference: InferenceConfig,
                    changes: dict[str, Any]) -> tuple[PublishConfig, InferenceConfig]:
    """Return new (publish, inference) sections with ``changes`` applied, or raise ConfigError."""
    unknown = sorted(set(changes) - set(SETTABLE_KEYS))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}; settable: {', '.join(SETTABLE_KEYS)}")
    for key, value in changes.items():
        _check_type(key, value)
    try:
        new_publish = PublishConfig.model_validate(
            {**publish.model_dump(), **{k: v for k, v in changes.items() if k in PUBLISH_KEYS}})
        new_inference = InferenceConfig.model_validate(
            {**inference.model_dump(), **{k: v for k, v in changes.items() if k in INFERENCE_KEYS}})
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{key}: {first['msg']} (got {first.get('input')!r})") from None
    return new_publish, new_inference


def current_settings(publish: PublishConfig, inference: InferenceConfig) -> dict[str, Any]:
    values = {key: getattr(publish, key) for key in PUBLISH_KEYS}
    values.update({key: getattr(inference, key) for key in INFERENCE_KEYS})
    return values


def _check_type(key: str, value: Any) -> None:
    """Commands arrive as JSON: refuse "3" for a number or true for 1 instead of coercing."""
    if key == "policy":
        if not isinstance(value, str):
            raise ConfigError(f"policy: must be a string (got {value!r})")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: must be a number (got {value!r})")
