"""Who may talk to the web preview: Host names that belong to the server (DNS
rebinding), Origin/Referer on state-changing requests (other web pages), auth
before 404, the Server header and the Basic scheme's case (issue 11, points 4
and 7). Real requests against a real server on a loopback port."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import cv2
import pytest

from edgecam.config import HttpAuthConfig, HttpPreviewConfig
from tests.support.web_control import chelsea_bgr

PNG = {"Content-Type": "image/png"}
PASSWORD_ENV = "EDGECAM_TEST_PREVIEW_PASSWORD"


def _png() -> bytes:
    return cv2.imencode(".png", chelsea_bgr())[1].tobytes()


def _basic(user: str, password: str, scheme: str = "Basic") -> dict[str, str]:
    return {"Authorization": f"{scheme} " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- Host -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/latest.jpg", "/api/latest", "/stream.mjpg", "/metrics", "/health", "/nope"])
def test_a_foreign_host_name_is_refused_on_every_path(start_preview, path: str) -> None:
    srv = start_preview()
    status, _h, body = srv.request("GET", path, headers={"Host": f"attacker.example:{srv.port}"})
    assert status == 403, body
    assert "preview.http.allowed_hosts" in json.loads(body)["error"]
    assert srv.preview.forbidden == {"host": 1}
    metrics = srv.request("GET", "/metrics")[2].decode()
    assert "\nedgecam_preview_forbidden_total 1\n" in metrics


def test_two_host_headers_are_refused(start_preview) -> None:
    srv = start_preview(feed=False)
    sock = srv.connect()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: attacker.example\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.0 403 ")
    sock.close()


def test_host_names_that_belong_to_the_server(start_preview) -> None:
    srv = start_preview()
    port = srv.port
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}",
                 f"{socket.gethostname()}:{port}", f"{socket.gethostname()}.local:{port}"):
        assert srv.request("GET", "/latest.jpg", headers={"Host": host})[0] == 200, host
    for host in ("10.1.2.3", f"127.0.0.1.attacker.example:{port}", f"localhost.attacker.example:{port}",
                 "::1", f"127.0.0.1:{port}:1", "[::1", "a b", "", f"rebind.example:{port}"):
        assert srv.request("GET", "/latest.jpg", headers={"Host": host})[0] == 403, host


def test_configured_names_are_allowed(start_preview) -> None:
    srv = start_preview(allowed_hosts=["Cam.Example.org", "kitchen-pi"])
    for host in ("cam.example.org", f"CAM.example.org:{srv.port}", "kitchen-pi:8080"):
        assert srv.request("GET", "/api/latest", headers={"Host": host})[0] == 200, host
    assert srv.request("GET", "/api/latest", headers={"Host": "example.org"})[0] == 403


def test_ip_literals_are_allowed_when_bound_to_all_addresses(start_preview) -> None:
    srv = start_preview(bind="0.0.0.0")
    for host in ("192.168.1.20:8080", "10.0.0.5", "[fe80::1]:8080"):
        assert srv.request("GET", "/api/latest", headers={"Host": host})[0] == 200, host
    assert srv.request("GET", "/api/latest", headers={"Host": "rebind.example"})[0] == 403
    narrow = start_preview(bind="127.0.0.1")
    assert narrow.request("GET", "/api/latest", headers={"Host": "192.168.1.20"})[0] == 403


def test_bad_allowed_hosts_are_config_errors() -> None:
    for bad in (["http://cam"], ["cam/x"], [""], ["a b"]):
        with pytest.raises(ValueError, match="allowed_hosts"):
            HttpPreviewConfig(allowed_hosts=bad)


# -- Origin / Referer -------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},  # same host, another port: another site
    {"Referer": "http://evil.example/cats.html"},
    {"Origin": "http://evil.example", "Referer": "http://127.0.0.1/"},
])
def test_a_post_from_another_site_is_refused(start_preview, headers: dict[str, str]) -> None:
    srv = start_preview(feed=False)
    status, _h, body = srv.request("POST", "/classify", body=_png(), headers={**PNG, **headers})
    assert status == 403, body
    assert "another site" in json.loads(body)["error"]
    assert srv.control.classified == []


def test_a_post_from_the_page_itself_or_a_tool_is_accepted(start_preview) -> None:
    srv = start_preview(feed=False)
    own = f"http://127.0.0.1:{srv.port}"
    for headers in ({"Origin": own}, {"Referer": own + "/classify"}, {},
                    {"Origin": f"http://localhost:{srv.port}", "Host": f"localhost:{srv.port}"}):
        assert srv.request("POST", "/classify", body=_png(), headers={**PNG, **headers})[0] == 200, headers


def test_saved_credentials_do_not_help_a_foreign_origin(start_preview, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "hunter2")
    srv = start_preview(feed=False, auth=HttpAuthConfig(username="viewer", password_env=PASSWORD_ENV))
    headers = {**PNG, **_basic("viewer", "hunter2")}
    assert srv.request("POST", "/classify", body=_png(), headers={**headers, "Origin": "http://evil.example"})[0] == 403
    assert srv.request("POST", "/classify", body=_png(), headers=headers)[0] == 200
    assert srv.control.classified == [(300, 451, 3)]


# -- point 7 ----------------------------------------------------------------------------------------


def test_unknown_paths_need_a_login_when_auth_is_on(start_preview, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "hunter2")
    srv = start_preview(feed=False, auth=HttpAuthConfig(username="viewer", password_env=PASSWORD_ENV))
    for method, path in (("GET", "/nope"), ("GET", "/admin"), ("POST", "/nope"), ("POST", "/health"),
                         ("PUT", "/classify"), ("DELETE", "/")):
        status, headers, _b = srv.request(method, path)
        assert status == 401 and "www-authenticate" in headers, (method, path, status)
    login = _basic("viewer", "hunter2")
    assert srv.request("GET", "/nope", headers=login)[0] == 404
    status, headers, _b = srv.request("PUT", "/classify", headers=login)
    assert status == 405 and headers["allow"] == "GET, POST"
    assert srv.request("GET", "/health")[0] == 200  # still open for monitors


def test_the_server_header_names_no_python_version(start_preview) -> None:
    srv = start_preview(feed=False)
    for path in ("/health", "/nope"):
        assert srv.request("GET", path)[1]["server"] == "edgecam"
    sock = srv.connect()
    sock.sendall(b"BREW /pot HTTP/1.0\r\n\r\n")  # the standard library's own error path
    answer = sock.recv(4096)
    sock.close()
    assert b"Python" not in answer and b"\r\nServer: edgecam\r\n" in answer, answer


@pytest.mark.parametrize("scheme", ["basic", "BASIC", "bAsIc"])
def test_the_basic_scheme_name_is_case_insensitive(start_preview, tmp_path: Path, scheme: str) -> None:
    secret = tmp_path / "preview.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    srv = start_preview(feed=False, auth=HttpAuthConfig(username="viewer", password_file=str(secret)))
    assert srv.request("GET", "/api/latest", headers=_basic("viewer", "s3cret", scheme))[0] == 200
    assert srv.request("GET", "/api/latest", headers=_basic("viewer", "wrong", scheme))[0] == 401
    assert srv.request("GET", "/api/latest", headers=_basic("viewer", "s3cret", "Bearer"))[0] == 401
