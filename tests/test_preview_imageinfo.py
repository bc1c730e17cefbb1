"""The header sniffer agrees with OpenCV on real files of every format it
parses, never fails other than with an HttpError on hostile bytes, and the
multipart parser likewise (hypothesis)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecam.bench import bombs
from edgecam.web import imageinfo
from edgecam.web.errors import HttpError
from edgecam.web.upload import multipart_file

MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"RIFF\0\0\0\0WEBP", b"II*\0", b"MM\0*", b"GIF89a",
          b"P5\n", b"P1 "]


def _image(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(width * 1000 + height)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(1, 700), height=st.integers(1, 700),
       ext=st.sampled_from([".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm", ".pgm", ".pbm"]))
def test_sniffed_size_is_the_decoded_size(width: int, height: int, ext: str) -> None:
    image = _image(width, height)
    if ext in (".pgm", ".pbm"):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    data = cv2.imencode(ext, image)[1].tobytes()
    info = imageinfo.sniff(data)
    assert (info.width, info.height) == (width, height)
    decoded = imageinfo.decode(data, info)
    factor = imageinfo.reduction(info)
    assert decoded.shape == (-(-height // factor), -(-width // factor), 3)
    assert factor == 1 or min(decoded.shape[:2]) >= imageinfo.DECODE_MIN_SIDE


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_reduction_keeps_the_short_side_above_the_minimum(progressive: bool) -> None:
    params = [int(cv2.IMWRITE_JPEG_PROGRESSIVE), 1] if progressive else []
    data = cv2.imencode(".jpg", _image(2600, 1300), params)[1].tobytes()
    info = imageinfo.sniff(data)
    assert info.scalable and imageinfo.reduction(info) == 4  # 1300 / 4 = 325 >= 320 > 1300 / 8
    assert imageinfo.decode(data, info).shape == (325, 650, 3)


def test_gif_size_comes_from_screen_and_first_frame() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_image(123, 45)).save(buf, format="GIF")
    info = imageinfo.sniff(buf.getvalue())
    assert (info.format, info.width, info.height) == ("GIF", 123, 45)
    assert imageinfo.decode(buf.getvalue(), info).shape == (45, 123, 3)


@pytest.mark.parametrize("fmt", sorted(bombs.ALL))
def test_bombs_are_sized_from_their_header(fmt: str) -> None:
    info = imageinfo.sniff(bombs.ALL[fmt](40000, 30000 if fmt != "webp" else 20000))
    assert info.width == 40000 and info.pixels >= 40000 * (30000 if fmt != "webp" else 20000)
    with pytest.raises(HttpError) as err:
        imageinfo.check_pixels(info, 25_000_000)
    assert err.value.status == 413


@settings(max_examples=300, deadline=None)
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=200))
def test_hostile_headers_give_a_size_or_an_http_error(magic: bytes, tail: bytes) -> None:
    try:
        info = imageinfo.sniff(magic + tail)
    except HttpError as err:
        assert err.status in (400, 415)
    else:
        assert info.width > 0 and info.height > 0 and info.pixels >= info.width * info.height


@settings(max_examples=300, deadline=None)
@given(body=st.lists(st.sampled_from([b"--b", b"\r\n", b"\r\n\r\n", b"--", b"Content-Disposition: form-data",
                                      b'; name="image"', b'; filename="x"', b"x" * 10, b"\0"]), max_size=40))
def test_hostile_multipart_gives_bytes_or_an_http_error(body: list[bytes]) -> None:
    try:
        found = multipart_file("multipart/form-data; boundary=b", b"".join(body))
    except HttpError as err:
        assert err.status == 400
    else:
        assert isinstance(found, bytes) and found


def test_the_configured_limit_cannot_exceed_opencvs_own() -> None:
    import os

    import edgecam
    from edgecam.config import HttpPreviewConfig

    assert os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] == str(edgecam.OPENCV_MAX_IMAGE_PIXELS)
    HttpPreviewConfig(max_image_pixels=edgecam.OPENCV_MAX_IMAGE_PIXELS)
    with pytest.raises(ValueError, match="max_image_pixels"):
        HttpPreviewConfig(max_image_pixels=edgecam.OPENCV_MAX_IMAGE_PIXELS + 1)
