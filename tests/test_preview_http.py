"""The web preview over real HTTP: a real server on an ephemeral loopback port,
real JPEG frames flowing through a real PreviewHub, and ControlDouble (a
plain implementation of our own DaemonControl protocol) behind it."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgecam.config import HttpAuthConfig, HttpPreviewConfig
from edgecam.errors import ConfigError
from edgecam.preview.hub import PreviewHub
from edgecam.web import HttpPreview
from tests.support.web_control import ControlDouble, channel_top3, chelsea_bgr, make_result


def test_health_flips_between_200_and_503(start_preview) -> None:
    srv = start_preview()
    int8 = srv.control.int8_kernels()  # which INT8 kernels run, beside the verdict
    assert srv.get_json("/health") == (200, {"ok": True, "reason": "ok", "int8": int8})
    srv.control.healthy = (False, "no frame for 12.0 s (source lost)")
    assert srv.get_json("/health") == (503, {"ok": False, "reason": "no frame for 12.0 s (source lost)",
                                            "int8": int8})
    srv.control.healthy = (True, "ok")
    assert srv.get_json("/health")[0] == 200


def test_metrics_parse_and_counters_grow(start_preview) -> None:
    srv = start_preview()

    def scrape() -> dict[str, dict[str, float]]:
        status, headers, body = srv.request("GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {}
        for family in text_string_to_metric_families(body.decode()):
            families[family.name] = {
                s.name + json.dumps(s.labels, sort_keys=True): s.value for s in family.samples}
            families[family.name]["_type"] = family.type
        return families

    first = scrape()
    time.sleep(0.3)
    second = scrape()
    captured = "edgecam_frames_captured"  # the parser strips _total from counter family names
    assert first[captured]["_type"] == "counter"
    assert second[captured]["edgecam_frames_captured_total{}"] > first[captured]["edgecam_frames_captured_total{}"] > 0
    assert first["edgecam_mqtt_connected"]["edgecam_mqtt_connected{}"] == 1.0
    assert first["edgecam_resident_memory_bytes"]["edgecam_resident_memory_bytes{}"] == 120.5 * 1024 * 1024
    assert first["edgecam_healthy"]["edgecam_healthy{}"] == 1.0
    hist = second["edgecam_inference_latency_seconds"]
    assert hist["_type"] == "histogram"
    count = hist["edgecam_inference_latency_seconds_count{}"]
    assert count > first["edgecam_inference_latency_seconds"]["edgecam_inference_latency_seconds_count{}"]
    assert hist['edgecam_inference_latency_seconds_bucket{"le": "+Inf"}'] == count
    # Every offered inference took 10-16 ms: all of them sit in the 0.02 s bucket, none in 0.005 s.
    assert hist['edgecam_inference_latency_seconds_bucket{"le": "0.02"}'] == count
    assert hist['edgecam_inference_latency_seconds_bucket{"le": "0.005"}'] == 0
    assert second["edgecam_end_to_end_latency_seconds"]["_type"] == "histogram"


def test_latest_jpg_is_503_before_the_first_frame_then_the_annotated_frame(start_preview) -> None:
    srv = start_preview(feed=False)
    status, _h, body = srv.request("GET", "/latest.jpg")
    assert status == 503 and json.loads(body)["error"] == "no frame yet"
    frame = chelsea_bgr()
    srv.hub.offer(frame, [make_result(1, frame)])
    status, headers, body = srv.request("GET", "/latest.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == frame.shape
    # Below the overlay panel it is the photo (JPEG-close), inside it the panel is darker.
    assert np.abs(image[200:].astype(int) - frame[200:].astype(int)).mean() < 4
    assert image[:60, :200].mean() < frame[:60, :200].mean() * 0.7


def test_stream_yields_jpeg_parts_at_the_capped_rate(start_preview) -> None:
    srv = start_preview(max_fps=10)
    conn = http.client.HTTPConnection("127.0.0.1", srv.preview.port, timeout=10)
    conn.request("GET", "/stream.mjpg")
    resp = conn.getresponse()
    assert resp.status == 200
    boundary = resp.getheader("Content-Type").split("boundary=")[1]
    parts, started = [], time.monotonic()
    while len(parts) < 4:
        assert resp.readline().strip() == b"--" + boundary.encode()
        headers = {}
        while (line := resp.readline().strip()):
            key, _, value = line.decode().partition(":")
            headers[key.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        parts.append(resp.read(int(headers["content-length"])))
        assert resp.read(2) == b"\r\n"
    elapsed = time.monotonic() - started
    conn.close()
    for jpeg in parts:
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (300, 451, 3)
    assert elapsed >= 0.25  # 4 parts at <= 10 FPS cannot arrive in less than 3 intervals


def test_stop_returns_fast_with_an_open_stream(start_preview) -> None:
    srv = start_preview()
    conn = http.client.HTTPConnection("127.0.0.1", srv.preview.port, timeout=10)
    conn.request("GET", "/stream.mjpg")
    resp = conn.getresponse()
    resp.readline()
    assert srv.preview.stream_clients == 1
    started = time.monotonic()
    srv.preview.stop()
    assert time.monotonic() - started < 2.0
    deadline = time.monotonic() + 3
    while srv.preview.stream_clients and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.preview.stream_clients == 0  # the stream loop saw the stop event and ended
    conn.close()


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def test_classify_raw_body_with_a_real_photo(start_preview) -> None:
    srv = start_preview()
    photo = chelsea_bgr()
    status, _h, body = srv.request("POST", "/classify", body=_png(photo), headers={"Content-Type": "image/png"})
    reply = json.loads(body)
    assert status == 200
    expected = channel_top3(photo)  # PNG is lossless: the server saw exactly these pixels, in BGR order
    assert [t["label"] for t in reply["top"]] == [t.label for t in expected] == ["red", "green", "blue"]
    assert [t["score"] for t in reply["top"]] == [round(t.score, 5) for t in expected]
    assert (reply["width"], reply["height"]) == (451, 300) and reply["ms"] >= 0
    assert srv.control.classified == [(300, 451, 3)]


def test_classify_multipart_form_upload(start_preview) -> None:
    srv = start_preview()
    photo = chelsea_bgr()
    jpeg = cv2.imencode(".jpg", photo)[1].tobytes()
    boundary = "----edgecamtest"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"cat.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + jpeg + f"\r\n--{boundary}--\r\n".encode()
    status, _h, raw = srv.request("POST", "/classify", body=body,
                                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, raw
    assert json.loads(raw)["top"][0]["label"] == "red"
    assert srv.control.classified == [(300, 451, 3)]
    status, _h, page = srv.request("GET", "/classify")
    assert status == 200 and b'enctype="multipart/form-data"' in page


def test_classify_rejects_bad_uploads_with_clear_messages(start_preview) -> None:
    srv = start_preview(max_upload_bytes=1024)
    jpeg = {"Content-Type": "image/jpeg"}
    status, _h, body = srv.request("POST", "/classify", body=b"", headers=jpeg)
    assert status == 400 and "empty body" in json.loads(body)["error"]
    status, _h, body = srv.request("POST", "/classify", body=b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", headers=jpeg)
    assert status == 400 and json.loads(body)["error"] == "not a valid PNG file: the header is truncated"
    broken = bytearray(_png(chelsea_bgr()[:8, :8]))
    broken[40:60] = b"\xff" * 20  # the header is fine, the pixel data is not
    status, _h, body = srv.request("POST", "/classify", body=bytes(broken), headers=jpeg)
    assert status == 400 and json.loads(body)["error"].startswith("not an image: OpenCV could not decode"), body
    status, _h, body = srv.request("POST", "/classify", body=b"\0" * 5000, headers=jpeg)
    assert status == 413 and "max_upload_bytes (1024)" in json.loads(body)["error"]
    empty_form = "--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nx\r\n--b--\r\n".encode()
    status, _h, body = srv.request("POST", "/classify", body=empty_form,
                                   headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert status == 400 and "file field" in json.loads(body)["error"]
    assert srv.control.classified == []


def test_oversized_upload_is_refused_from_the_header_before_reading(start_preview) -> None:
    srv = start_preview(max_upload_bytes=1024)
    conn = http.client.HTTPConnection("127.0.0.1", srv.preview.port, timeout=5)
    conn.putrequest("POST", "/classify")
    conn.putheader("Content-Type", "image/jpeg")
    conn.putheader("Content-Length", str(500_000_000))
    conn.endheaders()  # no body is ever sent: the answer must come anyway
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()


def test_missing_content_length_is_411_and_unknown_path_404(start_preview) -> None:
    srv = start_preview()
    conn = http.client.HTTPConnection("127.0.0.1", srv.preview.port, timeout=5)
    conn.putrequest("POST", "/classify")
    conn.putheader("Content-Type", "image/png")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()
    status, reply = srv.get_json("/nope")
    assert status == 404 and "/nope" in reply["error"]


def test_api_latest_and_index_page(start_preview) -> None:
    srv = start_preview()
    while srv.hub.results_seen() < 3:
        time.sleep(0.02)
    status, data = srv.get_json("/api/latest")
    assert status == 200
    assert data["result"]["top"][0]["label"] == "tabby, tabby cat"
    assert data["result"]["frame"] == {"width": 451, "height": 300}
    assert data["fps"] > 0 and data["health"] == {"ok": True, "reason": "ok"} and data["paused"] is False
    assert data["stats"]["captured"] > 0
    status, headers, page = srv.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<img id="stream" src="/stream.mjpg"' in page and b"http://" not in page and b"https://" not in page


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_from_a_password_file(start_preview, tmp_path: Path) -> None:
    secret = tmp_path / "preview.pass"
    secret.write_text("s3cret pass\n")
    srv = start_preview(auth=HttpAuthConfig(username="viewer", password_file=str(secret)))
    status, headers, _b = srv.request("GET", "/latest.jpg")
    assert status == 401 and headers["www-authenticate"].startswith("Basic realm=")
    assert srv.request("GET", "/metrics", headers=_basic("viewer", "wrong"))[0] == 401
    assert srv.request("GET", "/metrics", headers={"Authorization": "Basic !!notbase64"})[0] == 401
    assert srv.request("GET", "/latest.jpg", headers=_basic("viewer", "s3cret pass"))[0] == 200
    assert srv.request("POST", "/classify", body=_png(chelsea_bgr()), headers={"Content-Type": "image/png"})[0] == 401
    assert srv.request("GET", "/health")[0] == 200  # health stays open for monitors


def test_basic_auth_from_an_environment_variable(start_preview, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECAM_TEST_PREVIEW_PASSWORD", "hunter2")
    srv = start_preview(auth=HttpAuthConfig(username="viewer", password_env="EDGECAM_TEST_PREVIEW_PASSWORD"))
    assert srv.request("GET", "/api/latest")[0] == 401
    assert srv.request("GET", "/api/latest", headers=_basic("viewer", "hunter2"))[0] == 200


@pytest.mark.parametrize("auth, message", [
    (HttpAuthConfig(username="viewer"), "needs password_file or password_env"),
    (HttpAuthConfig(password_env="X"), "needs a username"),
    (HttpAuthConfig(username="viewer", password_env="EDGECAM_UNSET_VARIABLE_FOR_TEST"), "is not set"),
    (HttpAuthConfig(username="viewer", password_file="/nonexistent/pass"), "cannot read /nonexistent/pass"),
])
def test_bad_auth_config_is_a_config_error(auth: HttpAuthConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HttpPreview(HttpPreviewConfig(auth=auth), PreviewHub(5), ControlDouble())


def test_public_bind_without_auth_warns(start_preview, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam.web")
    start_preview(feed=False, bind="0.0.0.0")
    assert any("without authentication" in r.getMessage() for r in caplog.records)
    caplog.clear()
    start_preview(feed=False, bind="127.0.0.1")
    assert not caplog.records


def test_port_in_use_is_a_config_error(start_preview) -> None:
    srv = start_preview(feed=False)
    cfg = HttpPreviewConfig(enabled=True, port=srv.preview.port)
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{srv.preview.port}"):
        HttpPreview(cfg, PreviewHub(5), ControlDouble()).start()


@pytest.mark.parametrize("request_line, status", [
    (b"GET / JUNK", 400), (b"GET / HTTP/2.0", 505), (b"POST /classify HTTP/1.1\r\nX-Big: " + b"x" * 70_000, 431),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.0", 414), (b"GET /health HTTP/0.9", 505), (b"GET /health", 505),
    (b"POST /metrics HTTP/0.9", 505),
])
def test_a_request_http_server_cannot_parse_gets_a_status_line_and_json(start_preview, request_line: bytes,  # noqa: F811
                                                                         status: int) -> None:
    """http.server answers a bad request line with its HTML error page and, when it could not
    read an HTTP version, without a status line or headers at all (HTTP/0.9 style): a client
    cannot even tell it was an error. Found by the reliability harness's request fuzzer."""
    srv = start_preview(feed=False)
    with srv.connect() as sock:
        sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 %d " % status), answer[:200]
    assert b"Content-Type: application/json" in head and b"Server: edgecam\r\n" in head
    assert "error" in json.loads(body)
