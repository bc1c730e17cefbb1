"""Calibration and held-out images for INT8 quantization.

By default real photos shipped by scikit-image (cat, coffee, rocket, astronaut,
motorcycle, textures...) are turned into augmented views (crops, flips,
brightness/contrast). Calibration and held-out views are disjoint, and some
photos (chelsea, coffee, motorcycle_right) are only ever held out. A folder of
images or a video file (``--calib``) replaces the built-in set.

Every view is preprocessed by the runtime's own Preprocessor, so calibration
sees exactly what the daemon feeds the model.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgecam.errors import ModelBuildError
from edgecam.model.preprocess import Preprocessor

log = logging.getLogger(__name__)

# Real camera photos among skimage's bundled data (no synthetic charts or phantoms).
COLOR_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png",
)
GREY_PHOTOS = (
    "camera.png", "coins.png", "moon.png", "brick.png", "grass.png", "gravel.png",
    "clock_motion.png", "page.png",
)
HOLDOUT_ONLY = ("chelsea", "coffee", "motorcycle_right")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

Named = tuple[str, np.ndarray]


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def builtin_photos() -> list[Named]:
    """(name, BGR uint8) for each bundled real photo; grey ones become 3-channel."""
    folder = skimage_data_dir()
    photos = []
    for filename in COLOR_PHOTOS + GREY_PHOTOS:
        image = cv2.imread(str(folder / filename), cv2.IMREAD_COLOR)
        if image is None:
            raise ModelBuildError(f"scikit-image photo {folder / filename} is missing or unreadable")
        photos.append((Path(filename).stem, image))
    return photos


def augment(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random view: crop of 30-100% area, aspect 3:4-4:3, flip, brightness/contrast."""
    height, width = bgr.shape[:2]
    area = rng.uniform(0.3, 1.0) * height * width
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    crop_w = max(16, min(width, round(math.sqrt(area * aspect))))
    crop_h = max(16, min(height, round(math.sqrt(area / aspect))))
    x0 = int(rng.integers(0, width - crop_w + 1))
    y0 = int(rng.integers(0, height - crop_h + 1))
    view = bgr[y0 : y0 + crop_h, x0 : x0 + crop_w]
    if rng.random() < 0.5:
        view = view[:, ::-1]
    view = cv2.convertScaleAbs(view, alpha=rng.uniform(0.75, 1.25), beta=rng.uniform(-25, 25))
    return np.ascontiguousarray(view)


def builtin_sets(calib_count: int, holdout_count: int) -> tuple[list[Named], list[Named]]:
    """Disjoint (calibration, held-out) views of the bundled photos."""
    photos = builtin_photos()
    calib_bases = [p for p in photos if p[0] not in HOLDOUT_ONLY]
    calib_rng, hold_rng = np.random.default_rng(1), np.random.default_rng(2)
    calib = [
        (f"{name}#c{i}", augment(image, calib_rng))
        for i, (name, image) in zip(range(calib_count), _cycle(calib_bases))
    ]
    holdout = list(photos[:holdout_count])  # untouched originals first
    for i, (name, image) in zip(range(holdout_count - len(holdout)), _cycle(photos)):
        holdout.append((f"{name}#h{i}", augment(image, hold_rng)))
    return calib, holdout


def _cycle(items: list[Named]) -> Iterator[Named]:
    while True:
        yield from items


def user_sets(source: str, calib_count: int, holdout_count: int) -> tuple[list[Named], list[Named]]:
    """(calibration, held-out) frames from a folder of images or a video file."""
    wanted = calib_count + holdout_count
    path = Path(source)
    if path.is_dir():
        frames = _folder_frames(path, wanted)
    elif path.is_file():
        frames = _video_frames(path, wanted)
    else:
        raise ModelBuildError(f"--calib {source}: no such folder or video file")
    if len(frames) < 2:
        raise ModelBuildError(f"--calib {source}: found {len(frames)} usable images, need at least 2")
    # Every k-th frame is held out, the rest calibrate (the two never overlap).
    step = max(2, round(len(frames) / holdout_count)) if holdout_count else len(frames) + 1
    held = set(list(range(0, len(frames), step))[:holdout_count])
    holdout = [frames[i] for i in sorted(held)]
    calib = [item for i, item in enumerate(frames) if i not in held][:calib_count]
    return calib, holdout


def _evenly(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in idx]


def _folder_frames(folder: Path, wanted: int) -> list[Named]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    frames = []
    for file in _evenly(files, wanted):
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            log.warning("calibration: skipping unreadable image %s", file)
            continue
        frames.append((file.name, image))
    return frames


def _video_frames(video: Path, wanted: int) -> list[Named]:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise ModelBuildError(f"--calib {video}: not a folder and not a readable video")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    stride = max(1, total // wanted) if total > 0 else 1
    frames: list[Named] = []
    index = 0
    try:
        while len(frames) < wanted:
            ok, frame = capture.read()
            if not ok:
                break
            if index % stride == 0:
                frames.append((f"{video.name}@{index}", frame))
            index += 1
    finally:
        capture.release()
    return frames


def calibration_sets(
    source: str | None, calib_count: int, holdout_count: int
) -> tuple[list[Named], list[Named]]:
    """The built-in set, or ``--calib`` DIR_OR_VIDEO when given."""
    if source:
        calib, holdout = user_sets(os.fspath(source), calib_count, holdout_count)
        origin = source
    else:
        calib, holdout = builtin_sets(calib_count, holdout_count)
        origin = "scikit-image photos"
    log.info("calibration: %d images, %d held out (%s)", len(calib), len(holdout), origin)
    return calib, holdout


def make_reader(images: list[Named], pre: Preprocessor, input_name: str):  # -> CalibrationDataReader
    """An onnxruntime CalibrationDataReader over ``images``, preprocessed like the runtime."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.tensors = [pre(image) for _, image in images]
            self.position = 0

        def get_next(self) -> dict | None:
            if self.position >= len(self.tensors):
                return None
            self.position += 1
            if self.position % 16 == 0 or self.position == len(self.tensors):
                log.info("calibration: %d/%d images", self.position, len(self.tensors))
            return {input_name: self.tensors[self.position - 1]}

        def rewind(self) -> None:
            self.position = 0

    return Reader()
