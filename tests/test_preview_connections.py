"""Connections to the web preview: a total deadline per request, bounded
threads and connections, 503 + Retry-After when saturated (logged once a
minute), the stream cap and the listen backlog (issue 11, point 3). Real
sockets against a real server on a loopback port."""

from __future__ import annotations

import json
import logging
import select
import shutil
import socket
import subprocess
import threading
import time

import pytest


def _drip(sock: socket.socket, data: bytes, every_s: float, give_up_s: float) -> tuple[float, bytes]:
    """Send ``data`` one byte every ``every_s`` until the server answers or closes.
    Returns (seconds until then, what the server sent)."""
    started = time.monotonic()
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started, b""
        readable, _, _ = select.select([sock], [], [], every_s)
        if readable:
            received = b""
            try:
                while chunk := sock.recv(4096):
                    received += chunk
            except (ConnectionResetError, socket.timeout):
                pass
            return time.monotonic() - started, received
        if time.monotonic() - started > give_up_s:
            break
    return float("inf"), b""


def test_a_client_dripping_headers_is_cut_off_at_the_request_deadline(start_preview) -> None:
    srv = start_preview(feed=False, request_timeout_s=2)
    sock = srv.connect()
    # One byte a second: the old per-recv timeout (15 s) would never fire.
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 60
    elapsed, answer = _drip(sock, request, every_s=1.0, give_up_s=10)
    sock.close()
    assert 1.5 < elapsed < 5, elapsed
    assert answer.startswith(b"HTTP/1.0 408 "), answer[:80]
    assert b"request_timeout_s" in answer


def test_a_client_dripping_the_body_is_cut_off_too(start_preview) -> None:
    srv = start_preview(feed=False, request_timeout_s=2)
    sock = srv.connect()
    sock.sendall(b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                 b"Content-Length: 1000\r\n\r\n")
    elapsed, answer = _drip(sock, b"\x89PNG" + b"\0" * 996, every_s=0.5, give_up_s=10)
    sock.close()
    assert elapsed < 5 and answer.startswith(b"HTTP/1.0 408 "), (elapsed, answer[:80])
    assert srv.control.classified == []


def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_open_connections_and_threads_are_bounded(start_preview) -> None:
    srv = start_preview(feed=False, workers=2, max_streams=1, max_connections=40)
    threads_before = threading.active_count()
    idle = [srv.connect() for _ in range(40)]  # connected, never sending a byte
    try:
        _wait_for(lambda: srv.preview.open_connections == 40)
        assert threading.active_count() - threads_before <= 0  # the pool was started with the server
        status, headers, body = srv.request("GET", "/health")
        assert status == 503 and headers["retry-after"] == "1", body
        assert "busy" in json.loads(body)["error"]
    finally:
        for sock in idle:
            sock.close()
    _wait_for(lambda: srv.request("GET", "/health")[0] == 200)


def test_saturation_is_logged_once_a_minute_with_a_count(start_preview, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam.web")
    srv = start_preview(feed=False, workers=1, max_streams=1, max_connections=2)
    idle = [srv.connect() for _ in range(2)]
    try:
        _wait_for(lambda: srv.preview.open_connections == 2)
        statuses = [srv.request("GET", "/health")[0] for _ in range(5)]
    finally:
        for sock in idle:
            sock.close()
    assert statuses == [503] * 5
    busy = [r.getMessage() for r in caplog.records if "503" in r.getMessage()]
    assert len(busy) == 1, busy  # the first refusal is logged, the next ones are counted
    assert "max_connections (2)" in busy[0]
    assert srv.preview.busy_refusals == 5
    _wait_for(lambda: srv.preview.open_connections == 0)
    status, _h, metrics = srv.request("GET", "/metrics")
    assert status == 200 and "\nedgecam_preview_busy_total 5\n" in metrics.decode()


def test_the_busy_log_reports_the_count_a_minute_later(caplog: pytest.LogCaptureFixture) -> None:
    from edgecam.web.limits import BusyLog

    now = [1000.0]
    log = BusyLog(clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="edgecam.web")
    for _ in range(7):
        log.refused("connections", "max_connections (8)")
        now[0] += 5
    now[0] += 30  # 65 s after the first
    log.refused("streams", "max_streams (2)")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "max_connections (8)" in messages[0]
    assert "7 requests in the last 65 s" in messages[1] and "connections: 6, streams: 1" in messages[1]
    assert log.total == 8


def test_the_stream_cap_answers_503_and_leaves_room_for_requests(start_preview) -> None:
    srv = start_preview(max_streams=1)
    first = srv.connect()
    first.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert first.recv(64).startswith(b"HTTP/1.0 200")
    try:
        _wait_for(lambda: srv.preview.stream_clients == 1)
        status, headers, body = srv.request("GET", "/stream.mjpg")
        assert status == 503 and headers["retry-after"] == "1"
        assert "max_streams (1)" in json.loads(body)["error"]
        assert srv.request("GET", "/api/latest")[0] == 200
    finally:
        first.close()
    _wait_for(lambda: srv.preview.stream_clients == 0)


def _listen_backlog(port: int) -> int:
    ss = shutil.which("ss")
    if ss is None:
        pytest.fail("ss not found: install Debian's iproute2 package")
    out = subprocess.run([ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[2])  # State Recv-Q Send-Q ...: Send-Q of a listener is its backlog


def test_the_listen_backlog_is_real(start_preview) -> None:
    assert _listen_backlog(start_preview(feed=False).port) == 128
    assert _listen_backlog(start_preview(feed=False, backlog=300).port) == 300


def test_64_simultaneous_connects_all_get_an_answer(start_preview) -> None:
    srv = start_preview(feed=False)
    results: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        status = srv.request("GET", "/health", timeout=20)[0]
        with lock:
            results.append(status)

    threads = [threading.Thread(target=one) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [200] * 64
