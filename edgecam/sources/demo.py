"""Built-in demo source for machines without a camera.

It pans and zooms slowly over real photos that scikit-image ships (a cat, a
cup of coffee, a rocket, an astronaut, a motorcycle), a few seconds each with a
short crossfade, so a classifier has something meaningful to say. The daemon
must not import scikit-image: the photos are found by path through
``importlib.util.find_spec`` (which does not import the package) and loaded
with cv2.imread.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from edgecam.config import SourceConfig
from edgecam.errors import SourceError
from edgecam.sources.base import FrameSource
from edgecam.sources.pacing import Pacer

log = logging.getLogger(__name__)

#: Photo files inside scikit-image's data folder, in playing order.
PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png")
SECONDS_PER_PHOTO = 4.0
CROSSFADE_S = 0.5
MAX_ZOOM = 1.2  # the crop shrinks to 1/MAX_ZOOM of the largest crop over one photo
PAN_FRACTION = 0.6  # share of the free room around the crop that the pan crosses

_INSTALL_HINT = "install scikit-image (pip install scikit-image) or set source.uri to a camera or video file"


def find_photo_dir() -> Path:
    """scikit-image's data folder, located without importing scikit-image."""
    try:
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise SourceError(f"the demo source needs the sample photos shipped with scikit-image: {_INSTALL_HINT}")
    return Path(spec.origin).parent / "data"


def load_photos(folder: Path) -> list[tuple[str, np.ndarray]]:
    photos = []
    for name in PHOTOS:
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if image is None:
            log.debug("demo photo %s not found or unreadable in %s", name, folder)
            continue
        photos.append((Path(name).stem, image))
    if not photos:
        raise SourceError(f"no demo photos found in {folder}: {_INSTALL_HINT}")
    return photos


class DemoSource(FrameSource):
    """A moving clip rendered on the fly, paced like a camera (cfg.pace).

    The timeline follows the frame count (t = n / fps), so the same frame
    number always shows the same picture, paced or not.
    """

    source_id = "demo"

    def __init__(self, cfg: SourceConfig) -> None:
        self.width = cfg.width or 640
        self.height = cfg.height or 480
        self.fps = cfg.fps or 30.0
        self.pace = cfg.pace
        self._photos: list[tuple[str, np.ndarray]] = []
        self._pacer: Optional[Pacer] = None
        self._frame_index = 0
        #: Name of the photo that dominates the last frame returned ("chelsea", ...).
        self.last_photo: Optional[str] = None

    @property
    def photo_names(self) -> list[str]:
        return [name for name, _ in self._photos]

    def open(self) -> None:
        if not self._photos:
            self._photos = load_photos(find_photo_dir())
        self._pacer = Pacer(self.fps) if self.pace else None

    def read(self) -> np.ndarray:
        if not self._photos:
            raise SourceError("demo source is not open")
        frame = self.render(self._frame_index / self.fps)
        self._frame_index += 1
        if self._pacer is not None:
            self._pacer.wait()
        return frame

    def close(self) -> None:
        self._pacer = None

    def describe(self) -> str:
        return f"demo clip of {', '.join(self.photo_names) or 'sample photos'} at {self.fps:g} fps"

    # -- rendering ----------------------------------------------------------------
    def render(self, t: float) -> np.ndarray:
        """The frame at ``t`` seconds into the (endlessly repeating) clip."""
        count = len(self._photos)
        t_cycle = t % (count * SECONDS_PER_PHOTO)
        index = min(int(t_cycle // SECONDS_PER_PHOTO), count - 1)
        local = t_cycle - index * SECONDS_PER_PHOTO
        frame = self._ken_burns(index, local / SECONDS_PER_PHOTO)
        fade_start = SECONDS_PER_PHOTO - CROSSFADE_S
        if local <= fade_start or count == 1:
            self.last_photo = self._photos[index][0]
            return frame
        alpha = (local - fade_start) / CROSSFADE_S
        following = (index + 1) % count
        self.last_photo = self._photos[following if alpha >= 0.5 else index][0]
        return cv2.addWeighted(frame, 1.0 - alpha, self._ken_burns(following, 0.0), alpha, 0.0)

    def _ken_burns(self, index: int, progress: float) -> np.ndarray:
        """Photo ``index`` cropped and scaled to the output size at ``progress`` (0..1)."""
        image = self._photos[index][1]
        img_h, img_w = image.shape[:2]
        aspect = self.width / self.height
        crop_w, crop_h = (img_h * aspect, float(img_h)) if img_w / img_h > aspect else (float(img_w), img_w / aspect)
        ease = 0.5 - 0.5 * np.cos(np.pi * progress)  # slow in, slow out
        zoom = 1.0 + (MAX_ZOOM - 1.0) * ease
        crop_w, crop_h = crop_w / zoom, crop_h / zoom
        direction = 1.0 if index % 2 == 0 else -1.0  # alternate the pan direction
        shift = direction * PAN_FRACTION * (ease - 0.5)
        x0 = (img_w - crop_w) * (0.5 + shift)
        y0 = (img_h - crop_h) * (0.5 + shift / 2)
        scale = self.width / crop_w
        matrix = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]], dtype=np.float64)
        return cv2.warpAffine(image, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
