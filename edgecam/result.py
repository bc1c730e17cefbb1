"""The immutable Result the inference thread produces, and its JSON payload.

The same payload goes to every sink (stdout JSON lines, MQTT ``.../result``);
its JSON Schema lives in ``edgecam/schemas/result.schema.json``. Every payload is
encoded by ``encode_json``: strict JSON, never NaN or Infinity.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edgecam.model.types import Label

log = logging.getLogger(__name__)
_non_finite_seen = 0


@dataclass(frozen=True, slots=True)
class Result:
    device: str
    source: str
    seq: int
    captured_mono: float  # time.monotonic() when the frame was read
    captured_wall: float  # time.time() at the same instant, for payloads
    inference_start: float  # monotonic
    inference_end: float  # monotonic
    top: tuple[Label, ...]
    model_name: str
    model_precision: str
    model_input_size: int
    frame_width: int
    frame_height: int
    camera: str = "default"
    region: str = "full"
    handed_mono: float | None = None  # set by the publisher when handed to the sinks
    # Set by the publisher for results the on_change policy admits: a change (or its
    # heartbeat) people act on, which the MQTT sink keeps in its durable outbox.
    durable: bool = False

    @property
    def wait_ms(self) -> float:
        return (self.inference_start - self.captured_mono) * 1000.0

    @property
    def inference_ms(self) -> float:
        return (self.inference_end - self.inference_start) * 1000.0

    @property
    def publish_ms(self) -> float:
        if self.handed_mono is None:
            return 0.0
        return (self.handed_mono - self.inference_end) * 1000.0

    @property
    def total_ms(self) -> float:
        return self.wait_ms + self.inference_ms + self.publish_ms

    def handed(self, now_mono: float) -> Result:
        """A copy stamped with the moment it is handed to the sinks."""
        return dataclasses.replace(self, handed_mono=now_mono)

    def with_top(self, top: tuple[Label, ...]) -> Result:
        return dataclasses.replace(self, top=top)

    def to_payload(self) -> dict[str, Any]:
        wait, inference, publish = (round(v, 3) for v in (self.wait_ms, self.inference_ms, self.publish_ms))
        return {
            "device": self.device,
            "camera": self.camera,
            "region": self.region,
            "source": self.source,
            "seq": self.seq,
            "captured_at": iso_utc_ms(self.captured_wall),
            "top": [{"label": t.label, "index": t.index, "score": round(float(t.score), 5)} for t in self.top],
            "latency_ms": {
                "wait": wait,
                "inference": inference,
                "publish": publish,
                "total": round(wait + inference + publish, 3),
            },
            "frame": {"width": self.frame_width, "height": self.frame_height},
            "model": {
                "name": self.model_name,
                "precision": self.model_precision,
                "input_size": self.model_input_size,
            },
        }


def iso_utc_ms(wall: float) -> str:
    """ISO 8601 UTC with millisecond precision, e.g. 2026-11-23T20:07:17.123Z."""
    stamp = datetime.fromtimestamp(wall, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def encode_json(obj: Any) -> bytes:
    """Compact, strict JSON (UTF-8). NaN and infinity, which standard parsers (a browser's
    JSON.parse, Home Assistant) reject, become null, with a warning (the 1st, 10th, 100th...):
    a model's non-finite output is refused before it becomes a result, so this is a last guard."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str).encode("utf-8")
    except ValueError:
        pass  # a non-finite float somewhere (a circular reference would fail again below)
    global _non_finite_seen
    _non_finite_seen += 1
    if _non_finite_seen in (1, 10, 100) or _non_finite_seen % 1000 == 0:
        log.warning("a payload held NaN or infinity; sent as null (%d time(s) so far)", _non_finite_seen)
    return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False, default=str).encode("utf-8")


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (dicts, lists and tuples walked)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj
