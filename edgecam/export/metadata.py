"""Writing and reading edgecam metadata_props in ONNX files (build side, uses onnx)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgecam.model.metadata import BUILD_KEY, FORMAT_KEY, FORMAT_VERSION, info_to_props
from edgecam.model.types import ModelInfo


def write_metadata(path: Path, info: ModelInfo, build_key: dict[str, Any]) -> None:
    """Replace the file's metadata_props with ``info`` (+ the build key), in place."""
    import onnx

    proto = onnx.load(str(path))
    props = info_to_props(info)
    props[BUILD_KEY] = json.dumps(build_key, sort_keys=True)
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "edgecam"
    onnx.save(proto, str(path))


def read_props(path: Path) -> dict[str, str] | None:
    """The metadata_props of an ONNX file, or None when it cannot be read."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None
    return {entry.key: entry.value for entry in proto.metadata_props}


def is_up_to_date(path: Path, build_key: dict[str, Any]) -> bool:
    """True when ``path`` exists and was built by this format with the same options."""
    if not path.is_file():
        return False
    props = read_props(path)
    if not props or props.get(FORMAT_KEY) != FORMAT_VERSION:
        return False
    try:
        return json.loads(props.get(BUILD_KEY, "null")) == json.loads(json.dumps(build_key))
    except json.JSONDecodeError:
        return False
