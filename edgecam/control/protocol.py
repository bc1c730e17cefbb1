"""The control surface the daemon exposes to MQTT commands and the web preview.

Keeping it a Protocol means publish/ and preview/ never import the daemon:
they receive an object that implements this and call only these methods.
``camera=None`` means every camera; names that do not exist raise ConfigError.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

import numpy as np

from edgecam.model.types import Label
from edgecam.preview.hub import PreviewHub


class DaemonControl(Protocol):
    @property
    def paused(self) -> bool:
        """True while every camera is paused."""

    def camera_names(self) -> list[str]:
        """The cameras, in config order."""

    def pause(self, camera: Optional[str] = None) -> bool:
        """Stop classifying (capture keeps running so resume is instant). Returns whether the
        camera (None: every camera) is paused right after this change."""

    def resume(self, camera: Optional[str] = None) -> bool: ...

    def apply_settings(self, settings: dict[str, Any], camera: Optional[str] = None,
                       region: Optional[str] = None) -> dict[str, Any]:
        """Change runtime settings: daemon-wide (policy, min_score, max_fps, smoothing,
        change_delta, heartbeat_s, interval_hz) or, with camera and region, one region's
        (min_score, confirm, top_k, trigger, interval_s, motion_threshold, max_idle_s).
        Validates everything first and raises ConfigError naming the key on a bad value
        (then nothing changes). Returns the settings now in force."""

    def state(self) -> dict[str, Any]:
        """Retained state: device, version, paused, model, settings, and per camera its
        source (id, connected, state, error), paused flag and regions (settings, state)."""

    def stats(self) -> dict[str, Any]:
        """The latest stats snapshot (same dict as the stats topic)."""

    def snapshot_jpeg(self, camera: Optional[str] = None) -> Optional[bytes]:
        """JPEG of the latest annotated frame of ``camera`` (default: the first), or None
        before its first result."""

    def health(self) -> tuple[bool, str]:
        """(True, "ok") while results flow; (False, reason) when a camera is lost or a
        loop is stuck."""

    def int8_kernels(self) -> dict[str, Any]:
        """Which INT8 kernels the models run on and why (edgecam/model/cpu.py)."""

    def capture_sample(self, camera: str, region: str, label: Optional[str] = None) -> dict[str, Any]:
        """Save the region's crop of the newest frame as a training sample (in ``label``'s
        folder, else the region's inbox): {"sample": id, "bytes": n}. Raises EdgecamError."""

    def list_samples(self, camera: str, region: str) -> dict[str, Any]:
        """The region's samples: {"samples": [{"id", "label", "bytes"}], "labels", "files", "mb", ...}."""

    def label_samples(self, camera: str, region: str, sample_ids: list[str], label: str) -> int:
        """Move samples (ids as listed) to ``label`` ("inbox" to unlabel); returns how many."""

    def delete_samples(self, camera: str, region: str, sample_ids: list[str]) -> int: ...

    def sample_jpeg(self, camera: str, region: str, sample_id: str) -> bytes: ...

    def burst(self, camera: str, region: str, count: int, seconds: float) -> dict[str, Any]:
        """Start taking ``count`` crops of the region over ``seconds`` in the background, kept when
        unlike the region's other samples; list_samples shows its progress ("burst")."""

    def suggest(self, camera: str, region: str, sample_ids: list[str]) -> dict[str, Any]:
        """The region's running model on samples: {"model", "suggestions": {id: {"label", "score"}}}."""

    def crop_jpeg(self, camera: str, region: str) -> bytes:
        """The region's crop of the camera's newest frame (unannotated) as JPEG; raises EdgecamError."""

    def region_files(self, camera: str, region: str) -> dict[str, Any]:
        """Where the region's samples ("dataset") and models ("models", "backbone", "model") are, its
        config key path ("key") and box, trigger and confirm as they run."""

    def reload(self) -> dict[str, Any]:
        """Re-read the config file, validate it whole and apply the difference live (as SIGHUP
        does), model files changed on disk included: {"changes": [...], "needs_restart": [...],
        "cameras": [...]}. Raises ConfigError / ModelError, and then nothing changed."""

    def edit_config(self, edits: dict[str, Any]) -> dict[str, Any]:
        """Write ``edits`` (dotted key path -> value) into the config file, keeping its comments,
        and apply it live; the reply is reload's plus {"written": path}. Nothing is written
        when the result does not validate."""

    def hubs(self) -> "dict[str, PreviewHub]":
        """Each camera's preview hub (annotated frames for the web app), in config order."""

    def upload_model(self, camera: str, region: str, data: bytes) -> dict[str, Any]:
        """Deploy an ONNX file for one region without a restart; raises ModelError (the old
        model keeps running) when it does not load."""

    def classify_image(self, bgr: np.ndarray) -> tuple[list[Label], float]:
        """One-shot classification of an uploaded image with the default model: (Top-k, ms)."""
