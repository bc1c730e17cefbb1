"""Test media generated on the fly from the real photos scikit-image ships."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")


def photo_bgr(name: str, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    import skimage.data

    rgb = getattr(skimage.data, name)()
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    return cv2.resize(cv2.cvtColor(rgb[..., :3], cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_AREA)


def moving_frames(count: int, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    """A slow pan over the photos: every frame differs from the previous one."""
    frames = []
    per_photo = max(1, count // len(PHOTOS))
    for i in range(count):
        big = photo_bgr(PHOTOS[(i // per_photo) % len(PHOTOS)], (size[0] + 64, size[1] + 48))
        dx = (i % per_photo) * 64 // per_photo
        frames.append(np.ascontiguousarray(big[24:24 + size[1], dx:dx + size[0]]))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} with MJPG")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path
