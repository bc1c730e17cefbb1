"""POST /classify against hostile uploads, over real HTTP on a real server:
decompression bombs in every format OpenCV decodes, formats without a header
check, a busy classifier, and multipart bodies built to burn CPU (issue 11,
points 1, 2 and the content-type part of 4)."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from edgecam.bench import bombs
from tests.support.web_control import channel_top3, chelsea_bgr

PNG = {"Content-Type": "image/png"}
JPEG = {"Content-Type": "image/jpeg"}


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def _form(*parts: tuple[str, str | None, bytes], boundary: str = "xYz") -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body: parts are (field name, filename or None, content)."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# -- 1. decompression bombs ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(bombs.ALL))
def test_a_bomb_is_refused_from_its_header_with_413(start_preview, fmt: str) -> None:
    srv = start_preview(feed=False)
    data = bombs.ALL[fmt](20000, 20000)
    assert len(data) < 100_000
    started = time.monotonic()
    status, _h, body = srv.request("POST", "/classify", body=data, headers=PNG)
    assert status == 413, body
    error = json.loads(body)["error"]
    assert "20000x20000" in error and "max_image_pixels (25000000)" in error, error
    assert time.monotonic() - started < 5  # nothing was decoded
    assert srv.control.classified == []


def test_bombs_in_other_shapes_are_refused_too(start_preview) -> None:
    srv = start_preview(feed=False)
    for data in (bombs.png(30000, 30000), bombs.jpeg(20000, 20000, progressive=True), bombs.webp_lossless(16384, 16384),
                 bombs.tiff(20000, 20000, big_endian=True), bombs.bmp(20000, -20000)):
        status, _h, body = srv.request("POST", "/classify", body=data, headers=PNG)
        assert status == 413, body
    form, headers = _form(("image", "bomb.png", bombs.png(20000, 20000)))
    status, _h, body = srv.request("POST", "/classify", body=form, headers=headers)
    assert status == 413 and "20000x20000" in json.loads(body)["error"]
    assert srv.control.classified == []


def test_the_pixel_limit_is_configurable_and_inclusive(start_preview) -> None:
    srv = start_preview(feed=False, max_image_pixels=10_000)
    photo = chelsea_bgr()
    assert srv.request("POST", "/classify", body=_png(photo[:100, :100]), headers=PNG)[0] == 200
    status, _h, body = srv.request("POST", "/classify", body=_png(photo[:100, :101]), headers=PNG)
    assert status == 413 and "101x100" in json.loads(body)["error"]
    assert srv.control.classified == [(100, 100, 3)]


def test_a_large_jpeg_is_decoded_at_reduced_size(start_preview) -> None:
    srv = start_preview(feed=False)
    photo = cv2.resize(chelsea_bgr(), (4000, 3000), interpolation=cv2.INTER_LINEAR)
    data = cv2.imencode(".jpg", photo, [int(cv2.IMWRITE_JPEG_QUALITY), 90])[1].tobytes()
    status, _h, body = srv.request("POST", "/classify", body=data, headers=JPEG)
    assert status == 200, body
    reply = json.loads(body)
    assert (reply["width"], reply["height"]) == (4000, 3000)  # the size that was sent
    assert srv.control.classified == [(375, 500, 3)]  # decoded at 1/8: the model needs 160 px
    # Decoding at 1/8 is a good downscale: the channel means match the full-size photo's.
    expected = channel_top3(photo)
    assert [t["label"] for t in reply["top"]] == [t.label for t in expected]
    assert [t["score"] for t in reply["top"]] == pytest.approx([t.score for t in expected], abs=0.005)


def _encode(ext: str) -> bytes:
    return cv2.imencode(ext, chelsea_bgr()[:64, :64])[1].tobytes()


@pytest.mark.parametrize("name, data", [
    ("JPEG 2000", lambda: _encode(".jp2")),
    ("Radiance HDR", lambda: _encode(".hdr")),
    ("Sun raster", lambda: _encode(".ras")),
    ("PFM", lambda: _encode(".pfm")),
    ("PAM", lambda: _encode(".pam")),
    ("text", lambda: b"this is not an image at all"),
])
def test_formats_without_a_header_check_are_refused_with_415(start_preview, name: str, data) -> None:
    srv = start_preview(feed=False)
    status, _h, body = srv.request("POST", "/classify", body=data(), headers=PNG)
    assert status == 415, (name, body)
    assert "JPEG, PNG" in json.loads(body)["error"]
    assert srv.control.classified == []


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm", ".pgm", ".pbm"])
def test_every_checked_format_is_classified(start_preview, ext: str) -> None:
    srv = start_preview(feed=False)
    image = chelsea_bgr() if ext not in (".pgm", ".pbm") else cv2.cvtColor(chelsea_bgr(), cv2.COLOR_BGR2GRAY)
    status, _h, body = srv.request("POST", "/classify", body=cv2.imencode(ext, image)[1].tobytes(),
                                   headers={"Content-Type": "image/x-anything"})
    assert status == 200, (ext, body)
    assert (json.loads(body)["width"], json.loads(body)["height"]) == (451, 300)
    assert srv.control.classified == [(300, 451, 3)]


def test_a_gif_is_classified(start_preview) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(chelsea_bgr()[:, :, ::-1]).save(buf, format="GIF")
    srv = start_preview(feed=False)
    status, _h, body = srv.request("POST", "/classify", body=buf.getvalue(), headers={"Content-Type": "image/gif"})
    assert status == 200, body
    assert srv.control.classified == [(300, 451, 3)]


def test_a_busy_classifier_answers_503_with_retry_after(start_preview) -> None:
    srv = start_preview(feed=False, classify_concurrency=1, classify_wait_s=0.3)
    srv.control.gate = threading.Event()
    photo = _png(chelsea_bgr())
    first: list[int] = []
    holder = threading.Thread(target=lambda: first.append(srv.request("POST", "/classify", body=photo,
                                                                         headers=PNG)[0]))
    holder.start()
    deadline = time.monotonic() + 5
    while srv.control.in_classify == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        status, headers, body = srv.request("POST", "/classify", body=photo, headers=PNG, timeout=5)
        assert status == 503 and headers["retry-after"] == "1"
        assert "busy" in json.loads(body)["error"]
        assert srv.request("GET", "/health")[0] == 200  # the rest of the server is not blocked
    finally:
        srv.control.gate.set()
        holder.join(10)
    assert first == [200]
    assert srv.request("POST", "/classify", body=photo, headers=PNG)[0] == 200


# -- 4. content types ------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/octet-stream", "multipart/mixed; boundary=b"])
def test_classify_needs_an_image_or_form_content_type(start_preview, content_type) -> None:
    srv = start_preview(feed=False)
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, _h, body = srv.request("POST", "/classify", body=_png(chelsea_bgr()), headers=headers)
    assert status == 415, body
    assert "Content-Type: image/jpeg" in json.loads(body)["error"]
    assert srv.control.classified == []


# -- 2. multipart ----------------------------------------------------------------------------------


def test_150000_tiny_parts_are_refused_within_a_second(start_preview) -> None:
    srv = start_preview(feed=False)
    part = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n'
    body = part * 150_000 + b"--b--\r\n"
    assert 7_000_000 < len(body) < 8_000_000
    started = time.monotonic()
    status, _h, reply = srv.request("POST", "/classify", body=body,
                                    headers={"Content-Type": "multipart/form-data; boundary=b"}, timeout=60)
    elapsed = time.monotonic() - started
    assert status == 400 and "parts" in json.loads(reply)["error"], reply
    assert elapsed < 1.0, elapsed


def test_the_first_file_part_is_used_and_the_rest_is_not_parsed(start_preview) -> None:
    srv = start_preview(feed=False)
    photo = chelsea_bgr()
    junk = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n' * 100_000
    body = (b'--b\r\nContent-Disposition: form-data; name="image"; filename="cat.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + _png(photo) + b"\r\n" + junk + b"--b--\r\n")
    status, _h, reply = srv.request("POST", "/classify", body=body,
                                    headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert status == 200, reply
    assert srv.control.classified == [(300, 451, 3)]


def test_multipart_variants_browsers_and_curl_send(start_preview) -> None:
    srv = start_preview(feed=False)
    png = _png(chelsea_bgr())
    # A quoted boundary, a preamble, text fields first, a field named "file" without a filename.
    body, _ = _form(("note", None, b"hello"), ("file", None, png), boundary="----WebKitFormBoundary7MA4YWxk")
    headers = {"Content-Type": 'multipart/form-data; boundary="----WebKitFormBoundary7MA4YWxk"'}
    assert srv.request("POST", "/classify", body=b"preamble\r\n" + body, headers=headers)[0] == 200
    # An RFC 2231 filename*= and extra part headers in mixed case.
    body = (b"--q\r\ncontent-disposition: form-data; name=\"upload\"; filename*=UTF-8''K%C3%A4tzchen.png\r\n"
            b"CONTENT-TYPE: image/png\r\n\r\n" + png + b"\r\n--q--")
    assert srv.request("POST", "/classify", body=body,
                       headers={"Content-Type": "multipart/form-data; boundary=q"})[0] == 200
    assert srv.control.classified == [(300, 451, 3)] * 2


@pytest.mark.parametrize("content_type, body, message", [
    ("multipart/form-data", b"--b\r\n\r\nx\r\n--b--", "boundary"),
    ("multipart/form-data; boundary=" + "b" * 71, b"--b\r\n", "boundary"),
    ("multipart/form-data; boundary=b", b"no delimiter anywhere", "no part"),
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\x89PNG never ends',
     "unterminated"),
    ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="image"' + b"x" * 20_000,
     "header"),
    ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n--b--\r\n',
     "file field"),
])
def test_broken_multipart_bodies_get_400_with_a_reason(start_preview, content_type: str, body: bytes,
                                                       message: str) -> None:
    srv = start_preview(feed=False)
    status, _h, reply = srv.request("POST", "/classify", body=body, headers={"Content-Type": content_type})
    assert status == 400, reply
    assert message in json.loads(reply)["error"]
    assert srv.control.classified == []
