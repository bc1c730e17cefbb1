"""Frame preprocessing: BGR uint8 frame of any size -> the model's input tensor.

The geometry is torchvision's evaluation transform, ``Resize(int(size / 0.875))``
(short side) followed by ``CenterCrop(size)``, done with OpenCV. The crop is
then turned into what the model's ``layout`` asks for:

* ``NCHW_float``: float32 (1, 3, S, S), ``(x / 255 - mean) / std`` done here in numpy;
* ``NHWC_uint8``: uint8 (1, S, S, 3) RGB; the graph itself casts and normalizes.

Only numpy and cv2: this runs in the daemon.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgecam.model.metadata import LAYOUT_NCHW_FLOAT, LAYOUT_NHWC_UINT8
from edgecam.model.types import ModelInfo

CROP_FRACTION = 0.875  # torchvision/timm "crop_pct": resize to size/0.875, crop size

# How the short side is resized. torchvision resizes PIL images with an
# antialiased bilinear filter; plain cv2.INTER_LINEAR aliases on the ~2.6x
# downscale of a 640x480 frame, cv2.INTER_AREA matches PIL but is ~10x slower.
# "area+linear" first shrinks by the largest whole factor with INTER_AREA (its
# fast integer path), then finishes with a bilinear resize: as close to PIL as
# INTER_AREA for +0.15 ms over INTER_LINEAR (docs/model.md).
INTERPOLATIONS = ("area+linear", "linear", "area")
DEFAULT_INTERPOLATION = "area+linear"
# "area+linear" finishes with INTER_LINEAR_EXACT: bit-identical on x86 and ARM (plain
# INTER_LINEAR rounds differently on ARM, by 1 LSB on ~19% of values; scripts/arm64-check.sh).
_CV2_FLAGS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "area+linear": cv2.INTER_LINEAR_EXACT}


def resize_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(new_h, new_w) with the short side ``short``, as torchvision computes it."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


# A frame (or an uploaded picture) wider than this is first cut to its centre at this
# aspect ratio: the centre crop never uses more, and a 4000x2 strip would otherwise be
# resized to 364000x182 on the way (320 MB peak RSS, measured). Up to 3:1 (21:9
# ultrawide cameras are 2.33:1) the output is exactly torchvision's.
MAX_ASPECT = 3.0


def _clamp_aspect(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    if width > MAX_ASPECT * height:
        keep = int(MAX_ASPECT * height)
        left = (width - keep) // 2
        return image[:, left : left + keep]
    if height > MAX_ASPECT * width:
        keep = int(MAX_ASPECT * width)
        top = (height - keep) // 2
        return image[top : top + keep]
    return image


def _shrink_whole_factor(image: np.ndarray, short: int) -> np.ndarray:
    """Downscale by the largest integer factor keeping the short side >= ``short``."""
    height, width = image.shape[:2]
    factor = min(height, width) // short
    if factor < 2:
        return image
    # Trim to a multiple of the factor (< factor pixels) so cv2 takes its fast path.
    image = image[: height - height % factor, : width - width % factor]
    size = (image.shape[1] // factor, image.shape[0] // factor)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def resize_center_crop(
    image: np.ndarray, size: int, interpolation: str = DEFAULT_INTERPOLATION
) -> np.ndarray:
    """Resize the short side to ``int(size / 0.875)`` and cut the centred ``size`` square."""
    if interpolation not in _CV2_FLAGS:
        raise ValueError(f"interpolation {interpolation!r}: choose from {', '.join(INTERPOLATIONS)}")
    short = int(size / CROP_FRACTION)
    image = _clamp_aspect(image)
    if interpolation == "area+linear":
        image = _shrink_whole_factor(image, short)
    height, width = image.shape[:2]
    new_h, new_w = resize_size(height, width, short)
    if (new_h, new_w) != (height, width):
        image = cv2.resize(image, (new_w, new_h), interpolation=_CV2_FLAGS[interpolation])
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    return image[top : top + size, left : left + size]


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Accept HxWx3 BGR (as is), HxW grey or HxWx4 BGRA; uint8 only."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy image, got {getattr(frame, 'dtype', type(frame))}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"expected an HxWx3 BGR image, got shape {frame.shape}")


class Preprocessor:
    """Turns BGR frames into input tensors for one model (its size, layout, mean/std)."""

    def __init__(self, info: ModelInfo, interpolation: str = DEFAULT_INTERPOLATION) -> None:
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {interpolation!r}: choose from {', '.join(INTERPOLATIONS)}")
        self.size = info.input_size
        self.layout = info.layout
        self.interpolation = interpolation
        self._to_rgb = info.color_order == "RGB"
        mean = np.asarray(info.mean, dtype=np.float32)
        std = np.asarray(info.std, dtype=np.float32)
        # (x / 255 - mean) / std == x * scale - offset, folded once here.
        self._scale = (1.0 / (255.0 * std)).reshape(3, 1, 1)
        self._offset = (mean / std).reshape(3, 1, 1)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        if self.layout == LAYOUT_NHWC_UINT8:
            return (1, self.size, self.size, 3)
        return (1, 3, self.size, self.size)

    def crop(self, bgr: np.ndarray) -> np.ndarray:
        """The size x size crop in the model's colour order (uint8 HxWx3)."""
        crop = resize_center_crop(as_bgr(bgr), self.size, self.interpolation)
        if self._to_rgb:
            return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(crop)

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """The input tensor for one BGR frame (a new array each call)."""
        return self.batch([bgr])

    def batch(self, images: "list[np.ndarray] | tuple[np.ndarray, ...]") -> np.ndarray:
        """One input tensor for N frames of any sizes: each is resized and cropped on its
        own, straight into its row of one preallocated array (no per-image tensor, no
        concatenation: the batch of crops due together costs no extra copy)."""
        if self.layout == LAYOUT_NHWC_UINT8:
            return np.stack([self.crop(image) for image in images])
        if self.layout != LAYOUT_NCHW_FLOAT:
            raise ValueError(f"unknown layout {self.layout!r}")
        out = np.empty((len(images), *self.input_shape[1:]), dtype=np.float32)
        order = (2, 1, 0) if self._to_rgb else (0, 1, 2)
        for row, image in enumerate(images):
            crop = resize_center_crop(as_bgr(image), self.size, self.interpolation)
            # Plane copies + one in-place multiply-add: ~10x faster than a float
            # transpose of the whole crop in numpy (measured 0.03 vs 0.30 ms at 160).
            planes = cv2.split(crop)  # B, G, R
            for channel, plane in enumerate(order):
                out[row, channel] = planes[plane]
        out *= self._scale
        out -= self._offset
        return out
