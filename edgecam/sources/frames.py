"""What a frame must be before it enters the ring: BGR uint8, H x W x 3, sane shape.

Sources hand over whatever their decoder produced. The capture thread checks
each frame here, so one odd frame (a 16-bit image, a 4000x2 strip) is skipped
and counted instead of reaching the classifier or the preview, and grey or
BGRA frames are converted once, at the edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgecam.errors import SourceError

MIN_SIDE = 16  # pixels; anything smaller carries nothing to classify
MAX_SIDE = 8192
MAX_ASPECT = 8.0  # long side / short side; wider strips are not camera frames


class BadFrame(SourceError):
    """One frame that cannot be used; the source itself may still be fine."""


def to_bgr_frame(frame: object, source_id: str) -> np.ndarray:
    """``frame`` as BGR uint8 H x W x 3 (converted from grey or BGRA), or BadFrame."""
    if not isinstance(frame, np.ndarray):
        raise BadFrame(f"{source_id}: frame is a {type(frame).__name__}, not an image array")
    if frame.dtype != np.uint8:
        raise BadFrame(f"{source_id}: frame is {frame.dtype}, expected 8-bit (uint8)")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise BadFrame(f"{source_id}: frame has shape {frame.shape}, expected H x W, H x W x 3 or H x W x 4")
    height, width = frame.shape[:2]
    short, long = min(height, width), max(height, width)
    if short < MIN_SIDE or long > MAX_SIDE:
        raise BadFrame(f"{source_id}: frame of {width}x{height} is outside {MIN_SIDE}..{MAX_SIDE} pixels a side")
    if long > MAX_ASPECT * short:
        raise BadFrame(f"{source_id}: frame of {width}x{height} has an aspect ratio over {MAX_ASPECT:g}:1")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame
