"""Decompression bombs: small files that declare huge pictures, built in memory.

Each generator returns a few KB to ~1 MB of bytes whose header declares
``width`` x ``height`` pixels. ``png`` and ``jpeg`` really decode to that many
pixels (all-zero PNG rows; a JPEG whose data ends early, which libjpeg pads with
grey), so a server that decodes them allocates width * height * 3 bytes. The
others are valid headers with little or no pixel data: a server has to refuse
them from the header. Used by the preview tests and the reliability harness.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import cv2
import numpy as np


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@lru_cache(maxsize=8)
def png(width: int, height: int) -> bytes:
    """A 1-bit greyscale all-black PNG: ~width*height/8 bytes of zeros, deflated."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    chunks, left = [], height
    while left:
        rows = min(left, 4096)
        chunks.append(packer.compress(row * rows))
        left -= rows
    chunks.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(chunks))
            + _png_chunk(b"IEND", b""))


@lru_cache(maxsize=8)
def jpeg(width: int, height: int, progressive: bool = False) -> bytes:
    """A real 16x16 JPEG whose frame header (SOF) is patched to ``width`` x ``height``."""
    tile = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    params = [int(cv2.IMWRITE_JPEG_PROGRESSIVE), 1] if progressive else []
    data = bytearray(cv2.imencode(".jpg", tile, params)[1].tobytes())
    sof = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp(width: int, height: int) -> bytes:
    """BITMAPINFOHEADER for a 24-bit picture, followed by one row of pixels."""
    row = b"\0" * ((width * 3 + 3) // 4 * 4 if width < 100_000 else 64)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(row), 0, 0, 54) + info + row


def webp(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP canvas of width x height with a 1x1 lossless frame."""
    vp8x = struct.pack("<I", 0)[:1] + b"\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    vp8l = b"\x2f" + struct.pack("<I", 0) + b"\0\0\0\0"  # 1x1, no real pixel data
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x + b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossless(width: int, height: int) -> bytes:
    """A simple-format lossless (VP8L) WebP header for width x height (max 16384)."""
    bits = (width - 1) | ((height - 1) << 14)
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\0" * 16
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff(width: int, height: int, big_endian: bool = False) -> bytes:
    """A baseline 1-bit TIFF header (one strip, PackBits) with a few bytes of data."""
    e = ">" if big_endian else "<"
    entries = [(256, 4, width), (257, 4, height), (258, 3, 1), (259, 3, 32773), (262, 3, 1),
               (273, 4, 8 + 2 + 12 * 9 + 4), (277, 3, 1), (278, 4, height), (279, 4, 16)]
    ifd = struct.pack(e + "H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack(e + "H", value) + b"\0\0" if kind == 3 else struct.pack(e + "I", value)
        ifd += struct.pack(e + "HHI", tag, kind, 1) + packed
    ifd += struct.pack(e + "I", 0)
    head = (b"MM\0*" if big_endian else b"II*\0") + struct.pack(e + "I", 8)
    return head + ifd + b"\x81\x00" * 8  # PackBits: "repeat 0x00 128 times"


def gif(width: int, height: int) -> bytes:
    """A GIF whose logical screen and only frame are width x height (one LZW code)."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + frame + b"\x3b"


def pnm(width: int, height: int) -> bytes:
    """A binary greyscale PGM (P5) header with a few bytes of pixels."""
    return f"P5\n# bomb\n{width} {height}\n255\n".encode() + b"\0" * 64


ALL = {"png": png, "jpeg": jpeg, "bmp": bmp, "webp": webp, "tiff": tiff, "gif": gif, "pnm": pnm}
