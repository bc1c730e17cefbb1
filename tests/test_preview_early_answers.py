"""Answers sent before the request body was read must reach the client.

The server answers 413, 415, 401, 403 and 404 from the headers alone, while a client may still be
sending megabytes. Closing a socket with unread data makes the kernel send a TCP reset, and the
client's kernel then throws the answer away: ``curl`` and browsers report "connection reset"
instead of "upload too large". Found by the reliability harness (edgecam/bench/reliability/run.py) posting
large bodies; the server must read and discard what still arrives for a moment before it closes.
"""

from __future__ import annotations

import socket
import threading

import pytest

from edgecam.config import HttpAuthConfig
from tests.support.web import start_preview  # noqa: F401 - fixture

PASSWORD_ENV = "EDGECAM_TEST_EARLY_PASSWORD"
BODY = 6_000_000  # well above a socket buffer: the client is still sending when the answer comes


def _post_streaming(port: int, path: str, content_type: str, declared: int, extra: str = "") -> bytes:
    """POST ``declared`` bytes in 64 KB writes from a second thread; return what the server answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {declared}\r\n{extra}\r\n").encode()
    sock.sendall(head)

    def send_body() -> None:
        chunk = b"\0" * 65536
        try:
            for _ in range(0, BODY, len(chunk)):
                sock.sendall(chunk)
        except OSError:
            pass  # the server stopped reading: expected once it answered

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sender.join(10)
        sock.close()
    return answer


@pytest.mark.parametrize("path, content_type, declared, status", [
    ("/classify", "image/jpeg", 50_000_000, b"413"),  # larger than max_upload_bytes, refused on its header
    ("/classify", "text/plain", BODY, b"415"),
    ("/nothing-here", "image/jpeg", BODY, b"404"),
])
def test_an_early_answer_arrives_while_the_client_is_still_sending(start_preview, path: str,  # noqa: F811
                                                                 content_type: str, declared: int,
                                                                 status: bytes) -> None:
    srv = start_preview(feed=False)
    for _ in range(3):  # a reset loses the answer most of the time, not always
        answer = _post_streaming(srv.port, path, content_type, declared)
        assert answer.startswith(b"HTTP/1.0 " + status), answer[:200]


def test_a_401_arrives_while_the_client_is_still_sending(start_preview,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "hunter2")
    srv = start_preview(feed=False, auth=HttpAuthConfig(username="viewer", password_env=PASSWORD_ENV))
    for _ in range(3):
        answer = _post_streaming(srv.port, "/classify", "image/jpeg", BODY)
        assert answer.startswith(b"HTTP/1.0 401"), answer[:200]


def test_the_server_does_not_wait_for_a_client_that_never_stops_sending(start_preview) -> None:  # noqa: F811
    """The discard is bounded: a client sending forever is cut off, and the server keeps serving."""
    srv = start_preview(feed=False)
    answer = _post_streaming(srv.port, "/classify", "image/jpeg", 10**12)
    assert answer.startswith(b"HTTP/1.0 413")
    assert srv.request("GET", "/health")[0] == 200


@pytest.mark.parametrize("content_type, status", [("text/plain", 415), ("image/jpeg", 413)])
def test_a_client_that_sends_everything_before_reading_gets_the_answer(start_preview, content_type: str,  # noqa: F811
                                                                         status: int) -> None:
    """http.client, requests and many scripts send the whole body, then read. A server that
    closed after answering makes their last writes fail with a reset before they read."""
    srv = start_preview(feed=False, max_upload_bytes=5_000_000)
    for _ in range(3):
        assert srv.request("POST", "/classify", body=b"\0" * BODY, headers={"Content-Type": content_type})[0] == status
