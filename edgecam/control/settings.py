"""Runtime settings changes (the MQTT `set` command): validate all, then apply.

The one definition of what is settable at runtime and how a value is checked;
the MQTT command parser and the daemon's apply_settings both use it. Ranges
come from the typed config models, so a runtime change obeys exactly the same
rules as config.yaml, and a bad value changes nothing.

Two scopes: the daemon-wide settings (publish policy, max_fps, smoothing) and
one region's settings (``{"cmd": "set", "camera": C, "region": R, ...}``:
min_score, confirm, trigger...), checked against ``RegionConfig``.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ValidationError

from edgecam.config import InferenceConfig, PublishConfig, RegionConfig
from edgecam.errors import ConfigError

# setting -> (JSON type accepted, config model whose field gives the allowed range)
SETTINGS: dict[str, tuple[type, type[BaseModel]]] = {
    "policy": (str, PublishConfig),
    "min_score": (float, PublishConfig),
    "change_delta": (float, PublishConfig),
    "heartbeat_s": (float, PublishConfig),
    "interval_hz": (float, PublishConfig),
    "max_fps": (float, InferenceConfig),
    "smoothing": (int, InferenceConfig),
}
PUBLISH_KEYS = tuple(key for key, (_, section) in SETTINGS.items() if section is PublishConfig)
INFERENCE_KEYS = tuple(key for key, (_, section) in SETTINGS.items() if section is InferenceConfig)

# The settings of one region (``box`` and ``model`` need a restart / a reload).
REGION_SETTINGS: dict[str, tuple[type, type[BaseModel]]] = {
    "min_score": (float, RegionConfig),
    "confirm": (int, RegionConfig),
    "top_k": (int, RegionConfig),
    "trigger": (str, RegionConfig),
    "interval_s": (float, RegionConfig),
    "motion_threshold": (float, RegionConfig),
    "max_idle_s": (float, RegionConfig),
}
_KINDS = {float: "a number", int: "an integer", str: "a string"}


def check_setting(key: str, value: Any, table: dict[str, tuple[type, type[BaseModel]]] = SETTINGS) -> Any:
    """One setting as it arrives in JSON: refuse "3" for a number or true for 1 instead
    of coercing, then check the range against the config field. Raises ConfigError."""
    if key not in table:
        raise ConfigError(f"unknown setting {key!r} (expected one of {', '.join(table)})")
    kind, model = table[key]
    ok = not isinstance(value, bool) and (
        isinstance(value, (int, float)) if kind is float else isinstance(value, kind))
    if not ok:
        raise ConfigError(f"{key} must be {_KINDS[kind]}, got {type(value).__name__}")
    if kind is float:
        try:
            finite = math.isfinite(value)  # OverflowError for an int of 400 digits
        except OverflowError:
            finite = False
        if not finite:
            raise ConfigError(f"{key} must be a finite number")
    elif kind is int and abs(value) > 2**31:
        raise ConfigError(f"{key}: {str(value)[:20]}... is out of range")
    try:
        model.model_validate({key: value})
    except ValidationError as err:
        raise ConfigError(_first_error(err, key, value)) from None
    return float(value) if kind is float else value


def check_region_setting(key: str, value: Any) -> Any:
    return check_setting(key, value, REGION_SETTINGS)


def _first_error(err: ValidationError, key: str, value: Any) -> str:
    msg = err.errors()[0]["msg"].removeprefix("Value error, ")
    return f"{key}: {msg} (got {_short(value)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_update(publish: PublishConfig, inference: InferenceConfig,
                    changes: dict[str, Any]) -> tuple[PublishConfig, InferenceConfig]:
    """Return new (publish, inference) sections with ``changes`` applied, or raise ConfigError."""
    checked = {key: check_setting(key, value) for key, value in changes.items()}
    new_publish = publish.model_copy(update={k: v for k, v in checked.items() if k in PUBLISH_KEYS})
    new_inference = inference.model_copy(update={k: v for k, v in checked.items() if k in INFERENCE_KEYS})
    return new_publish, new_inference


def validate_region_update(current: RegionConfig, changes: dict[str, Any], where: str) -> RegionConfig:
    """``current`` with ``changes`` applied, checked as a whole (one validator with config.yaml)."""
    checked = {key: check_region_setting(key, value) for key, value in changes.items()}
    try:
        return RegionConfig.model_validate({**current.model_dump(), **checked})
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def current_settings(publish: PublishConfig, inference: InferenceConfig) -> dict[str, Any]:
    values = {key: getattr(publish, key) for key in PUBLISH_KEYS}
    values.update({key: getattr(inference, key) for key in INFERENCE_KEYS})
    return values
