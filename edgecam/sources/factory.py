"""Pick the FrameSource for a SourceConfig."""

from __future__ import annotations

from edgecam.config import SourceConfig
from edgecam.sources.base import FrameSource


def resolve_type(cfg: SourceConfig) -> str:
    """The concrete source type: ``type`` itself, or for ``auto`` one chosen from the uri:
    "demo" -> demo, "picamera2" -> picamera2, anything else (a device index, a
    path, an rtsp/http(s) URL) -> opencv."""
    if cfg.type != "auto":
        return cfg.type
    uri = cfg.uri.strip().lower()
    if uri == "demo":
        return "demo"
    if uri == "picamera2":
        return "picamera2"
    return "opencv"


def make_source(cfg: SourceConfig) -> FrameSource:
    """Build (not open) the source. Raises ConfigError for impossible settings."""
    kind = resolve_type(cfg)
    if kind == "demo":
        from edgecam.sources.demo import DemoSource

        return DemoSource(cfg)
    if kind == "picamera2":
        from edgecam.sources.picamera2_source import Picamera2Source

        return Picamera2Source(cfg)
    from edgecam.sources.opencv_source import OpenCVSource

    return OpenCVSource(cfg)
