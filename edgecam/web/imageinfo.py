"""What an uploaded image is and how many pixels it declares, read from its header before
anything is decoded, and the decode itself: ``edgecam.images.header`` (which training
uses too), with its refusals answered as HTTP errors (400, 413, 415).

A 109 KB PNG can declare 30000 x 30000 pixels: decoded as BGR that is 2.7 GB. So an
upload is decoded only when its header was parsed and declares at most
``max_image_pixels``.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np

from edgecam.images import header
from edgecam.images.header import DECODE_MIN_SIDE, ImageInfo, ImageRejected, reduction
from edgecam.web.errors import HttpError

__all__ = ["DECODE_MIN_SIDE", "ImageInfo", "check_pixels", "decode", "reduction", "sniff"]

T = TypeVar("T")


def _http(call: Callable[[], T]) -> T:
    try:
        return call()
    except ImageRejected as err:
        raise HttpError(err.status, str(err)) from None


def sniff(data: bytes) -> ImageInfo:
    return _http(lambda: header.sniff(data))


def check_pixels(info: ImageInfo, limit: int) -> None:
    _http(lambda: header.check_pixels(info, limit))


def decode(data: bytes, info: ImageInfo) -> np.ndarray:
    return _http(lambda: header.decode(data, info))
