"""Reading config.yaml: the one place that parses the file, and its error messages.

Errors name the file and the whole key path, e.g.
``config.yaml: cameras.garage.regions.door.box: x2 must be greater than x1``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from edgecam.config.root import Config
from edgecam.errors import ConfigError

#: A config is a few KB; this bounds what a hostile or mistaken path (a log, /dev/zero) can cost.
MAX_CONFIG_BYTES = 1_048_576
MAX_CONFIG_VALUES = 100_000
MAX_CONFIG_DEPTH = 32


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
    return load_text(read_text(file), file)


def load_text(text: str, file: Path) -> Config:
    """Validate config text as if it were ``file``'s (a change about to be written there)."""
    try:
        _check_nesting(text, file)
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{file}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
    _check_size(data, file)
    return parse_config(data, str(file))


def read_text(file: Path) -> str:
    """The file's text, refusing what is not a plain file of at most MAX_CONFIG_BYTES
    (``/dev/zero`` or a 30 MB file must not be read into memory)."""
    try:
        with open(file, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ConfigError(f"{file}: not a regular file")
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{file}: cannot read config file: {err.strerror or err}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: larger than {MAX_CONFIG_BYTES:,} bytes: not a config file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file}: cannot read config file: not UTF-8 text ({err.reason} at byte "
                          f"{err.start})") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently, so a second ``log_level:`` further down would quietly win) and turns an
    integer too long to convert (Python's 4300-digit limit) into a YAML error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"{key!r} is given twice",
                    key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer with {len(node.value)} digits is too long", node.start_mark) from None


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
         yaml.FlowSequenceStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _check_nesting(text: str, file: Path) -> None:
    """Refuse nesting deeper than MAX_CONFIG_DEPTH before parsing: PyYAML's composer recurses
    once per level, so ``[[[[...]]]]`` 5000 deep would end in a RecursionError (slowly). The
    scanner that yields tokens is a loop, so counting them is safe at any depth."""
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                mark = token.start_mark
                raise ConfigError(f"{file}: nested more than {MAX_CONFIG_DEPTH} levels deep "
                                  f"(line {mark.line + 1}, column {mark.column + 1})")
        elif isinstance(token, _CLOSE):
            depth -= 1


def _check_size(data: Any, file: Path) -> None:
    """Refuse documents that aliases expand past MAX_CONFIG_VALUES values or MAX_CONFIG_DEPTH
    levels: an alias bomb (the YAML "billion laughs") is a few hundred bytes that validation
    would walk 9**9 times."""
    count = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(f"{file}: more than {MAX_CONFIG_VALUES:,} values once aliases are expanded "
                              "(an alias bomb?)")
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{file}: nested more than {MAX_CONFIG_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


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
