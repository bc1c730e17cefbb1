"""What an image file is and how many pixels it declares, read from its header
before anything is decoded, and the decode itself.

A 109 KB PNG can declare 30000 x 30000 pixels: decoded as BGR that is 2.7 GB.
So a file is decoded only when its header was parsed here and declares at most
the caller's pixel limit (``MAX_IMAGE_PIXELS`` by default, the web app's
``preview.http.max_image_pixels``). Formats OpenCV could decode but this module
does not parse (JPEG 2000, HDR, Sun raster, PFM, PAM, AVIF, ...) are refused.
OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS, set in edgecam/__init__.py) is
the second fence. Each parser recognises its format by the same signature
OpenCV's decoder checks, so both pick the same decoder.

JPEGs are decoded at 1/2, 1/4 or 1/8 size by libjpeg itself (DCT scaling)
while the short side stays >= ``min_side`` (DECODE_MIN_SIDE by default): the
model needs ~182 px.

Every refusal is an ImageRejected whose ``status`` is the HTTP answer the web app
gives (400 corrupt, 413 too large, 415 not a format parsed here).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecam.errors import EdgecamError

MAX_IMAGE_PIXELS = 25_000_000  # the default of preview.http.max_image_pixels
MAX_IMAGE_BYTES = 8_000_000  # the default of preview.http.max_upload_bytes
DECODE_MIN_SIDE = 320
ACCEPTED = "JPEG, PNG, BMP, WebP, TIFF, GIF or PNM (PBM/PGM/PPM)"
_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}
# Huffman-coded baseline, extended and progressive frames: the ones libjpeg scales while decoding.
_SCALABLE_SOF = {0xC0, 0xC1, 0xC2}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageRejected(EdgecamError):
    """A file that is not decoded: ``status`` 400 (corrupt), 413 (too large), 415 (format)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    pixels: int  # the most pixels the decoder allocates at once (>= width * height)
    scalable: bool = False  # a JPEG libjpeg can decode at reduced size

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


class _Truncated(Exception):
    pass


def _bad(fmt: str, why: str) -> ImageRejected:
    return ImageRejected(400, f"not a valid {fmt} file: {why}")


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[Any, ...]:
    if offset < 0 or offset + struct.calcsize(fmt) > len(data):
        raise _Truncated
    return struct.unpack_from(fmt, data, offset)


def sniff(data: bytes) -> ImageInfo:
    """The format and declared size of ``data``. Raises ImageRejected: 415 for a
    format not parsed here, 400 for a corrupt or truncated header."""
    for name, matches, parse in _PARSERS:
        if matches(data):
            try:
                info = parse(data)
            except _Truncated:
                raise _bad(name, "the header is truncated") from None
            if info.width <= 0 or info.height <= 0:
                raise _bad(name, f"it declares {info.size} pixels")
            return info
    raise ImageRejected(415, f"not an image format edgecam reads: use {ACCEPTED}")


def check_pixels(info: ImageInfo, limit: int, setting: str = "preview.http.max_image_pixels") -> None:
    """ImageRejected 413 when ``info`` declares more than ``limit`` pixels; ``setting``
    names the limit in the message (a config key or a command-line option)."""
    if info.pixels > limit:
        raise ImageRejected(413, f"the {info.format} image declares {info.size} pixels ({info.pixels:,}), "
                                 f"more than {setting} ({limit}): scale it down first")


def reduction(info: ImageInfo, min_side: int = DECODE_MIN_SIDE) -> int:
    """1, 2, 4 or 8: the largest JPEG scale that keeps the short side >= min_side."""
    if not info.scalable:
        return 1
    short = min(info.width, info.height)
    return max((f for f in _REDUCED if short // f >= min_side), default=1)


def decode(data: bytes, info: ImageInfo, min_side: int = DECODE_MIN_SIDE) -> np.ndarray:
    """BGR pixels of a sniffed, size-checked file (JPEGs at reduced size, short side
    >= ``min_side``). Raises ImageRejected 400 when OpenCV cannot decode it or finds
    another size."""
    factor = reduction(info, min_side)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED[factor])
    except cv2.error:
        image = None
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise ImageRejected(400, f"not an image: OpenCV could not decode the {len(data)}-byte {info.format} file")
    expected = (math.ceil(info.height / factor), math.ceil(info.width / factor))
    if image.shape[:2] not in (expected, expected[::-1]):  # [::-1]: EXIF orientation swapped the sides
        raise ImageRejected(400, f"the {info.format} image decoded to {image.shape[1]}x{image.shape[0]}, "
                                 f"not the {info.size} its header declares")
    return image


# -- one parser per format -------------------------------------------------------------------------


def _jpeg(data: bytes) -> ImageInfo:
    """Walk the marker segments to the first frame header (SOFn), as libjpeg does."""
    pos = 2
    while True:
        if pos >= len(data):
            raise _Truncated
        if data[pos] != 0xFF:
            raise _bad("JPEG", f"no marker at byte {pos}")
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos >= len(data):
            raise _Truncated
        marker = data[pos]
        pos += 1
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            continue
        if marker in (0xD9, 0xDA):
            raise _bad("JPEG", "no frame header before the image data")
        (length,) = _unpack(">H", data, pos)
        if marker in _SOF:
            _precision, height, width = _unpack(">BHH", data, pos + 2)
            if height == 0:
                raise _bad("JPEG", "the height is given after the image data (DNL), which is not supported")
            return ImageInfo("JPEG", width, height, width * height, scalable=marker in _SCALABLE_SOF)
        if length < 2:
            raise _bad("JPEG", f"a segment of length {length}")
        pos += length


def _png(data: bytes) -> ImageInfo:
    (_length, kind, width, height) = _unpack(">I4sII", data, 8)
    if kind != b"IHDR":
        raise _bad("PNG", "the first chunk is not IHDR")
    if width > 2**31 - 1 or height > 2**31 - 1:
        raise _bad("PNG", f"{width}x{height} is outside the PNG limits")
    return ImageInfo("PNG", width, height, width * height)


def _bmp(data: bytes) -> ImageInfo:
    (header_size,) = _unpack("<I", data, 14)
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = _unpack("<HH", data, 18)
    elif header_size >= 36:  # BITMAPINFOHEADER and its successors; height < 0 = top-down
        width, height = _unpack("<ii", data, 18)
        height = abs(height)
    else:
        raise _bad("BMP", f"an info header of {header_size} bytes")
    return ImageInfo("BMP", width, height, width * height)


def _webp(data: bytes) -> ImageInfo:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise _bad("WebP", "no VP8 start code")
        width, height = (v & 0x3FFF for v in _unpack("<HH", data, 26))
    elif chunk == b"VP8L":
        if data[20:21] != b"\x2f":
            raise _bad("WebP", "no VP8L signature")
        (bits,) = _unpack("<I", data, 21)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X":  # extended format: the canvas size
        _unpack("<I6s", data, 20)
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
    else:
        raise _bad("WebP", f"an unknown first chunk {chunk!r}")
    return ImageInfo("WebP", width, height, width * height)


def _tiff(data: bytes) -> ImageInfo:
    """The first image file directory (the page OpenCV decodes), including its tile size."""
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = _unpack(order + "I", data, 4)
    (count,) = _unpack(order + "H", data, offset)
    tags: dict[int, int] = {}
    for entry in range(count):
        tag, kind, _n = _unpack(order + "HHI", data, offset + 2 + 12 * entry)
        if kind == 3:  # SHORT
            tags[tag] = _unpack(order + "H", data, offset + 10 + 12 * entry)[0]
        elif kind == 4:  # LONG
            tags[tag] = _unpack(order + "I", data, offset + 10 + 12 * entry)[0]
    if 256 not in tags or 257 not in tags:
        raise _bad("TIFF", "no ImageWidth/ImageLength in the first directory")
    width, height = tags[256], tags[257]
    tile = tags.get(322, 0) * tags.get(323, 0)
    return ImageInfo("TIFF", width, height, max(width * height, tile))


def _gif(data: bytes) -> ImageInfo:
    """The logical screen and the first frame (OpenCV decodes that one)."""
    width, height, flags = _unpack("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while True:
        (block,) = _unpack("B", data, pos)
        if block == 0x21:  # extension: label, then sub-blocks up to a zero length
            pos += 2
            while (size := _unpack("B", data, pos)[0]) != 0:
                pos += size + 1
            pos += 1
        elif block == 0x2C:
            _left, _top, frame_w, frame_h = _unpack("<HHHH", data, pos + 1)
            return ImageInfo("GIF", width, height, max(width * height, frame_w * frame_h))
        else:
            raise _bad("GIF", "no image in the file")


_PNM_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n)*(\d{1,10})")


def _pnm(data: bytes) -> ImageInfo:
    pos, sizes = 2, []
    for _ in range(2):
        match = _PNM_TOKEN.match(data, pos, pos + 4096)
        if match is None:
            raise _bad("PNM", "no width and height after the magic number")
        sizes.append(int(match.group(1)))
        pos = match.end()
    return ImageInfo("PNM", sizes[0], sizes[1], sizes[0] * sizes[1])


_PARSERS = (
    ("JPEG", lambda d: d[:3] == b"\xff\xd8\xff", _jpeg),
    ("PNG", lambda d: d[:8] == b"\x89PNG\r\n\x1a\n", _png),
    ("BMP", lambda d: d[:2] == b"BM", _bmp),
    ("WebP", lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", _webp),
    ("TIFF", lambda d: d[:4] in (b"II*\0", b"MM\0*"), _tiff),
    ("GIF", lambda d: d[:6] in (b"GIF87a", b"GIF89a"), _gif),
    ("PNM", lambda d: len(d) > 2 and d[:1] == b"P" and d[1:2] in b"123456" and d[2:3].isspace(), _pnm),
)


def read_image_file(path: Path, max_pixels: int = MAX_IMAGE_PIXELS, max_bytes: int = MAX_IMAGE_BYTES,
                    min_side: int = DECODE_MIN_SIDE, pixels_setting: str = "max_image_pixels",
                    bytes_setting: str = "max_image_bytes") -> tuple[np.ndarray, bytes]:
    """(BGR pixels, the file's bytes) of an image file within both limits.

    The size is checked before the file is read, the header before it is decoded.
    Raises ImageRejected (413 over a limit, 415 a format not parsed here, 400 corrupt)
    and OSError when the file cannot be read.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageRejected(413, f"the file has {size:,} bytes, more than {bytes_setting} ({max_bytes:,})")
    data = path.read_bytes()
    if len(data) > max_bytes:  # grew since the stat
        raise ImageRejected(413, f"the file has {len(data):,} bytes, more than {bytes_setting} ({max_bytes:,})")
    info = sniff(data)
    check_pixels(info, max_pixels, pixels_setting)
    return decode(data, info, min_side), data
