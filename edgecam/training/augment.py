"""Training augmentation, on the raw sample before the runtime's preprocessing.

The daemon hands the model a region's crop through ``Preprocessor`` (resize the
short side, centre crop, normalize). Augmented views are made from the saved
crop *before* that step, so every view then goes through exactly the code the
daemon runs. The jitter is mild on purpose: a region answers "is something
there", and a crop that cuts the object out would teach the wrong label.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

CROP_AREA = (0.75, 1.0)  # share of the sample kept by the crop jitter
CROP_ASPECT = (0.9, 1.1)
CONTRAST = (0.7, 1.3)  # gain
BRIGHTNESS = (-30.0, 30.0)  # offset in 8-bit steps


def random_view(bgr: np.ndarray, rng: np.random.Generator, flip: bool = True) -> np.ndarray:
    """A jittered crop, maybe mirrored, with brightness and contrast changed."""
    height, width = bgr.shape[:2]
    area = rng.uniform(*CROP_AREA) * height * width
    aspect = math.exp(rng.uniform(math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1])))
    crop_w = max(1, min(width, round(math.sqrt(area * aspect))))
    crop_h = max(1, min(height, round(math.sqrt(area / aspect))))
    x0 = int(rng.integers(0, width - crop_w + 1))
    y0 = int(rng.integers(0, height - crop_h + 1))
    view = bgr[y0 : y0 + crop_h, x0 : x0 + crop_w]
    if flip and rng.random() < 0.5:
        view = view[:, ::-1]
    view = cv2.convertScaleAbs(view, alpha=rng.uniform(*CONTRAST), beta=rng.uniform(*BRIGHTNESS))
    return np.ascontiguousarray(view)

