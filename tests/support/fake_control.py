"""FAKE DaemonControl for the MQTT sink's own tests: a thin, labelled stand-in that records
calls in plain Python (the daemon itself is tested through its real control surface elsewhere)."""

from __future__ import annotations

from typing import Any, Optional

from edgecam.errors import ConfigError
from edgecam.model.types import Label


class FakeControl:
    """FAKE DaemonControl (the daemon is not under test here): records calls in plain Python."""

    def __init__(self, snapshot: Optional[bytes] = b"\xff\xd8fakejpeg\xff\xd9") -> None:
        self.paused = False
        self.settings: dict[str, Any] = {"policy": "every", "min_score": 0.0, "max_fps": 0.0, "smoothing": 1}
        self.calls: list[tuple[str, Any]] = []
        self.snapshot = snapshot
        self.state_calls = 0

    def camera_names(self) -> list[str]:
        return ["default"]

    def pause(self, camera: Optional[str] = None) -> bool:
        self.calls.append(("pause", camera))
        self.paused = True
        return True

    def resume(self, camera: Optional[str] = None) -> bool:
        self.calls.append(("resume", camera))
        self.paused = False
        return False

    def apply_settings(self, settings: dict[str, Any], camera: Optional[str] = None,
                       region: Optional[str] = None) -> dict[str, Any]:
        self.calls.append(("apply_settings", dict(settings)) if camera is None else
                          ("apply_settings", dict(settings), camera, region))
        if settings.get("max_fps") == 999.0:  # lets a test exercise the daemon's own rejection
            raise ConfigError("max_fps: 999 is more than the camera can deliver")
        self.settings.update(settings)
        return dict(self.settings)

    def state(self) -> dict[str, Any]:
        self.state_calls += 1
        source = {"id": "demo", "connected": True, "state": "running"}
        return {"device": "fake", "paused": self.paused, "version": "test", "source": source,
                "model": {"name": "m"}, "cameras": {"default": {**source, "paused": self.paused, "regions": {}}}}

    def stats(self) -> dict[str, Any]:
        return {"fps": 1.0}

    def snapshot_jpeg(self, camera: Optional[str] = None) -> Optional[bytes]:
        self.calls.append(("snapshot_jpeg", camera))
        return self.snapshot

    def int8_kernels(self) -> dict:
        return {"exact": False, "mode": "off", "simd": "test", "reason": "a test double"}

    def health(self) -> tuple[bool, str]:
        return True, "ok"

    def classify_image(self, bgr: Any) -> tuple[list[Label], float]:
        raise NotImplementedError
