"""Reading config.yaml: the one place that parses the file, and its error messages.

Errors name the file and the whole key path, e.g.
``config.yaml: cameras.garage.regions.door.box: x2 must be greater than x1``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from edgecam.config.root import Config
from edgecam.errors import ConfigError


def format_validation_error(err: ValidationError, origin: str) -> str:
    lines = []
    for item in err.errors():
        path = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = item["msg"].removeprefix("Value error, ")
            if "input" in item and not isinstance(item["input"], (dict, list)):
                message += f" (got {_short(item['input'])})"
        lines.append(f"{origin}: {path}: {message}" if path else f"{origin}: {message}")
    return "; ".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_config(data: Any, origin: str = "<config>") -> Config:
    """Validate an already-parsed mapping. ``origin`` names the file in errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: top level must be a mapping, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin)) from None


def load_config(path: Optional[str | os.PathLike[str]]) -> Config:
    """Load and validate the YAML config; ``None`` gives the built-in defaults."""
    if path is None:
        return parse_config({}, "<defaults>")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{file}: cannot read config file: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{file}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
    return parse_config(data, str(file))


def apply_overrides(config: Config, overrides: dict[str, Any], origin: str = "command line") -> Config:
    """Return a new Config with dotted-key overrides applied, e.g. {"mqtt.port": 1884}."""
    data = config.model_dump(exclude_unset=True)
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_config(data, origin)
