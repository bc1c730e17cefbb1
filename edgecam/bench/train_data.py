"""Labelled image sets for the training tests and edgecam/bench/train.py (real photos only).

* ``scene_dataset``: a region of a real photo (scikit-image's rocket launch pad) in
  which a real object (the cat from chelsea.png) is present or absent, the way a
  camera sees a region over days: the crop window shakes by a few pixels, the
  light changes (gain, offset, a gradient, a colour cast), sensor noise, JPEG.
  Classes ``cat`` and ``empty``; files are the region crops, as the daemon saves them.
* ``lfw_dataset``: ``skimage/data/lfw_subset.npy``, 200 real 25x25 grey photos
  (the first 100 faces from Labeled Faces in the Wild, the last 100 non-faces),
  as PNG files. Classes ``face`` and ``not_face``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

REGION = (200, 150, 440, 390)  # x1, y1, x2, y2 in the 640x427 rocket photo
SHAKE = 6  # pixels of camera shake


def _photos() -> tuple[np.ndarray, np.ndarray]:
    import skimage.data

    scene = cv2.cvtColor(skimage.data.rocket(), cv2.COLOR_RGB2BGR)
    cat = cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR)[20:290, 90:400]
    return scene, cat


def _place(frame: np.ndarray, obj: np.ndarray, rng: np.random.Generator) -> None:
    """Blend ``obj`` (scaled to 25-50% of the region width) at a random spot inside the region."""
    x1, y1, x2, y2 = REGION
    side = int((x2 - x1) * rng.uniform(0.25, 0.5))
    h = int(side * obj.shape[0] / obj.shape[1])
    patch = cv2.resize(obj, (side, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    mask: np.ndarray = np.zeros((h, side), np.float32)
    cv2.ellipse(mask, (side // 2, h // 2), (side // 2 - 2, h // 2 - 2), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 3)[:, :, None]
    x = int(rng.integers(x1, x2 - side))
    y = int(rng.integers(y1, y2 - h))
    roi = frame[y : y + h, x : x + side].astype(np.float32)
    frame[y : y + h, x : x + side] = (mask * patch + (1 - mask) * roi).astype(np.uint8)


def _light_and_noise(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = crop.shape[:2]
    gain = rng.uniform(0.55, 1.3)
    ramp = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(-25, 25)
    cast = np.asarray(rng.uniform(0.92, 1.08, size=3), np.float32)
    out = crop.astype(np.float32) * gain * cast + rng.uniform(-30, 30) + ramp
    out += np.asarray(rng.normal(0, rng.uniform(2, 8), size=out.shape), np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def scene_sample(present: bool, rng: np.random.Generator) -> np.ndarray:
    scene, cat = _photos()
    frame = scene.copy()
    if present:
        _place(frame, cat, rng)
    dx, dy = (int(v) for v in rng.integers(-SHAKE, SHAKE + 1, size=2))
    x1, y1, x2, y2 = REGION
    crop = frame[y1 + dy : y2 + dy, x1 + dx : x2 + dx]
    return _light_and_noise(crop, rng)


def scene_dataset(root: Path, per_class: int, seed: int = 0) -> Path:
    """``root/cat/*.jpg`` and ``root/empty/*.jpg``, ``per_class`` each."""
    rng = np.random.default_rng(seed)
    for label, present in (("cat", True), ("empty", False)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = scene_sample(present, rng)
            cv2.imwrite(str(folder / f"{label}_{i:03d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 88])
    return root


def lfw_dataset(root: Path) -> Path:
    """``root/face/*.png`` (100) and ``root/not_face/*.png`` (100) from skimage's lfw_subset."""
    import skimage.data

    images = (skimage.data.lfw_subset() * 255).round().astype(np.uint8)
    for i, image in enumerate(images):
        label = "face" if i < 100 else "not_face"
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{label}_{i:03d}.png"), image)
    return root
