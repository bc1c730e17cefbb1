"""The control surface the daemon exposes to MQTT commands and the web preview.

Keeping it a Protocol means publish/ and preview/ never import the daemon:
they receive an object that implements this and call only these methods.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

import numpy as np

from edgecam.model.types import Label


class DaemonControl(Protocol):
    @property
    def paused(self) -> bool: ...

    def pause(self) -> None:
        """Stop classifying (capture keeps running so resume is instant)."""

    def resume(self) -> None: ...

    def apply_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Change runtime settings. Keys: policy, min_score, max_fps, smoothing,
        change_delta, heartbeat_s, interval_hz. Validates everything first and
        raises ConfigError naming the key on a bad value (then nothing changes).
        Returns the settings now in force."""

    def state(self) -> dict[str, Any]:
        """Retained state: {"source": {"id", "connected", "state"}, "model": {...},
        "paused": bool, "version": str, "device": str}."""

    def stats(self) -> dict[str, Any]:
        """The latest stats snapshot (same dict as the stats topic)."""

    def snapshot_jpeg(self) -> Optional[bytes]:
        """JPEG of the latest annotated frame, or None before the first result."""

    def health(self) -> tuple[bool, str]:
        """(True, "ok") while frames flow; (False, reason) when the source is
        lost or inference is stuck."""

    def classify_image(self, bgr: np.ndarray) -> tuple[list[Label], float]:
        """One-shot classification of an uploaded image: (Top-k, ms)."""
