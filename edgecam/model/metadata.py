"""The edgecam model metadata: what a model file says about itself.

Every model edgecam builds carries its labels, input size, normalization and
provenance in the ONNX ``metadata_props`` (string key/value pairs), so the
runtime needs nothing but the file. This module converts between those string
properties and :class:`~edgecam.model.types.ModelInfo`; it imports no torch or
onnx (the runtime reads the properties through onnxruntime).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from edgecam.errors import ModelError
from edgecam.model.types import ModelInfo

FORMAT_KEY = "edgecam_format_version"
FORMAT_VERSION = "1"

LAYOUT_NCHW_FLOAT = "NCHW_float"  # float32 (1,3,S,S) input, normalized in numpy
LAYOUT_NHWC_UINT8 = "NHWC_uint8"  # uint8 (1,S,S,3) RGB input, normalized in the graph
LAYOUTS = (LAYOUT_NCHW_FLOAT, LAYOUT_NHWC_UINT8)
# What `edgecam model build` writes unless told otherwise. Measured (INT8, 160 px,
# 2 threads, frame -> probabilities): numpy normalization + float input was faster
# than Cast/Mul/Sub in the graph for both ResNet-18 and EfficientNet-Lite0.
DEFAULT_LAYOUT = LAYOUT_NCHW_FLOAT

# Extra keys written by the builder but not part of ModelInfo.
BUILD_KEY = "edgecam_build_key"  # JSON of the build options, to skip identical rebuilds

_REQUIRED = (
    "labels",
    "input_size",
    "color_order",
    "mean",
    "std",
    "layout",
    "arch",
    "weights",
    "trained",
    "precision",
)


# Optional JSON objects (``edgecam train``). Readers that predate them ignore unknown
# keys, so a trained model still loads in an older edgecam: the format version stays 1.
_OPTIONAL_OBJECTS = ("dataset", "metrics")


def info_to_props(info: ModelInfo) -> dict[str, str]:
    """The ``metadata_props`` strings for ``info`` (inverse of :func:`info_from_props`)."""
    props = {
        FORMAT_KEY: FORMAT_VERSION,
        "name": info.name,
        "arch": info.arch,
        "precision": info.precision,
        "input_size": str(info.input_size),
        "labels": json.dumps(list(info.labels)),
        "trained": "true" if info.trained else "false",
        "weights": info.weights,
        "mean": json.dumps([float(v) for v in info.mean]),
        "std": json.dumps([float(v) for v in info.std]),
        "color_order": info.color_order,
        "layout": info.layout,
        "agreement": json.dumps(info.agreement, sort_keys=True),
    }
    for key in _OPTIONAL_OBJECTS:
        value = getattr(info, key)
        if value:
            props[key] = json.dumps(value, sort_keys=True)
    return props


def info_from_props(props: Mapping[str, str], source: str) -> ModelInfo:
    """Parse the metadata of model file ``source``; ModelError naming what is wrong."""
    version = props.get(FORMAT_KEY)
    if version is None:
        raise ModelError(
            f"{source}: no edgecam metadata in this ONNX file "
            "(build models with `edgecam model build`)"
        )
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{source}: edgecam model format version {version!r} is not supported "
            f"(this edgecam reads version {FORMAT_VERSION}); rebuild the model"
        )
    missing = [key for key in _REQUIRED if key not in props]
    if missing:
        raise ModelError(f"{source}: edgecam metadata lacks {', '.join(missing)}")
    try:
        return _parse(props, source)
    except (ValueError, TypeError) as err:
        raise ModelError(f"{source}: invalid edgecam metadata: {err}") from None


def _parse(props: Mapping[str, str], source: str) -> ModelInfo:
    labels = _json(props, "labels", list)
    if not labels or not all(isinstance(label, str) for label in labels):
        raise ValueError("labels must be a non-empty list of strings")
    size = int(props["input_size"])
    if size <= 0:
        raise ValueError(f"input_size must be positive, got {size}")
    mean, std = _triple(props, "mean"), _triple(props, "std")
    if min(std) <= 0:
        raise ValueError("std values must be positive")
    layout = props["layout"]
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    color = props["color_order"]
    if color not in ("RGB", "BGR"):
        raise ValueError(f"color_order {color!r} is not RGB or BGR")
    trained = props["trained"].strip().lower()
    if trained not in ("true", "false"):
        raise ValueError(f"trained must be true or false, got {props['trained']!r}")
    agreement = _json(props, "agreement", dict) if props.get("agreement") else {}
    extra = {key: _json(props, key, dict) for key in _OPTIONAL_OBJECTS if props.get(key)}
    return ModelInfo(
        name=props.get("name") or source,
        arch=props["arch"],
        precision=props["precision"],
        input_size=size,
        labels=tuple(labels),
        trained=trained == "true",
        weights=props["weights"],
        mean=mean,
        std=std,
        color_order=color,
        layout=layout,
        agreement=agreement,
        **extra,
    )


def _json(props: Mapping[str, str], key: str, kind: type) -> Any:
    try:
        value = json.loads(props[key], parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise ValueError(f"{key} is not valid JSON ({err.msg})") from None
    except _NonFinite as err:
        raise ValueError(f"{key} holds {err}, not a finite number") from None
    if not _all_finite(value):
        # NaN or infinity (1e999 reads as infinity) in normalization would make every output
        # NaN; anywhere else it would reach a JSON payload, which standard parsers reject.
        raise ValueError(f"{key} holds a number that is not finite (NaN or infinity)")
    if not isinstance(value, kind):
        raise TypeError(f"{key} must be a JSON {kind.__name__}")
    return value


class _NonFinite(ValueError):
    """NaN, Infinity or -Infinity in a metadata value (Python's json reads them; JSON has none)."""


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return True


def _triple(props: Mapping[str, str], key: str) -> tuple[float, float, float]:
    values = _json(props, key, list)
    if len(values) != 3:
        raise ValueError(f"{key} must have 3 values, got {len(values)}")
    a, b, c = (float(v) for v in values)
    return (a, b, c)
