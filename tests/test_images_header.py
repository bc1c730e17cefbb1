"""edgecam/images: the header sniffer and limits the trainer shares with the web app.

Sizes come from headers before anything is decoded; every refusal is an ImageRejected
with the status the web app answers (400, 413, 415); a file over the byte limit is not
even read. edgecam/web/imageinfo.py wraps this module: the web app and training agree.
"""

from __future__ import annotations

from dataclasses import astuple

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecam.bench import bombs
from edgecam.images import header
from edgecam.web import imageinfo
from edgecam.web.errors import HttpError

MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"RIFF\0\0\0\0WEBP", b"II*\0", b"MM\0*", b"GIF89a",
          b"P5\n", b"P1 "]


@pytest.mark.parametrize("fmt", sorted(bombs.ALL))
def test_bombs_are_sized_from_their_header_and_refused_naming_the_limit(fmt: str) -> None:
    data = bombs.ALL[fmt](40000, 30000 if fmt != "webp" else 20000)
    info = header.sniff(data)
    assert astuple(info) == astuple(imageinfo.sniff(data))
    with pytest.raises(header.ImageRejected) as err:
        header.check_pixels(info, 25_000_000, "--max-image-pixels")
    assert err.value.status == 413 and "more than --max-image-pixels (25000000)" in str(err.value)


@settings(max_examples=200, deadline=None)
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=200))
def test_hostile_headers_give_a_size_or_a_refusal_as_the_web_app_does(magic: bytes, tail: bytes) -> None:
    try:
        info = header.sniff(magic + tail)
    except header.ImageRejected as err:
        assert err.status in (400, 415)
        with pytest.raises(HttpError) as web:
            imageinfo.sniff(magic + tail)
        assert web.value.status == err.status
    else:
        assert astuple(info) == astuple(imageinfo.sniff(magic + tail))
        assert info.pixels >= info.width * info.height > 0


def test_read_image_file_checks_bytes_before_reading_and_pixels_before_decoding(tmp_path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), image)
    decoded, data = header.read_image_file(path, max_pixels=25_000_000, max_bytes=10_000_000, min_side=320)
    assert data == path.read_bytes() and decoded.shape == (375, 500, 3)  # 1/4 size: 1500 / 4 >= 320
    with pytest.raises(header.ImageRejected, match=r"more than max_image_bytes \(1,000\)") as err:
        header.read_image_file(path, max_bytes=1000)
    assert err.value.status == 413
    with pytest.raises(header.ImageRejected, match="declares 2000x1500 pixels") as err:
        header.read_image_file(path, max_pixels=1_000_000)
    (tmp_path / "bomb.png").write_bytes(bombs.png(20000, 20000))
    with pytest.raises(header.ImageRejected, match="declares 20000x20000 pixels"):
        header.read_image_file(tmp_path / "bomb.png")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(header.ImageRejected) as err:
        header.read_image_file(tmp_path / "text.jpg")
    assert err.value.status == 415


def test_the_trainers_defaults_are_the_web_apps() -> None:
    from edgecam.config import HttpPreviewConfig

    web = HttpPreviewConfig()
    assert (header.MAX_IMAGE_PIXELS, header.MAX_IMAGE_BYTES) == (web.max_image_pixels, web.max_upload_bytes)
