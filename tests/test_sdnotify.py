"""sd_notify against a real unix datagram socket, as systemd would provide it."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from edgecam.service.sdnotify import SdNotifier, WatchdogPinger


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def _drain(sock: socket.socket) -> list[str]:
    messages = []
    sock.settimeout(0.05)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except (socket.timeout, BlockingIOError):
        return messages


def test_messages_arrive_in_order_with_systemd_formats(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("classifying demo")
    assert notifier.status("2 frames\nper second")
    assert notifier.watchdog()
    assert notifier.extend_timeout(2.5)
    assert notifier.stopping()
    received = _drain(sock)
    notifier.close()
    assert received == [
        f"READY=1\nMAINPID={os.getpid()}\nSTATUS=classifying demo",
        "STATUS=2 frames per second",  # a status is one line
        "WATCHDOG=1",
        "EXTEND_TIMEOUT_USEC=2500000",
        "STOPPING=1",
    ]


def test_abstract_socket_names(tmp_path: Path) -> None:
    name = f"edgecam-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        assert SdNotifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        sock.settimeout(2)
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_no_op_without_notify_socket(tmp_path: Path) -> None:
    notifier = SdNotifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False and notifier.stopping() is False
    assert notifier.watchdog_interval_s() is None
    pinger = WatchdogPinger(notifier)
    assert pinger.period_s is None and pinger.ping() is False


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch, notify_socket) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = SdNotifier()
    assert notifier.watchdog_interval_s() == 30.0
    assert notifier.status("hello")
    assert sock.recv(100) == b"STATUS=hello"


def test_watchdog_interval_honours_watchdog_pid(notify_socket) -> None:
    _sock, path = notify_socket
    base = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"}
    assert SdNotifier(base).watchdog_interval_s() == 20.0
    assert SdNotifier({**base, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s() == 20.0
    assert SdNotifier({**base, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval_s() is None
    assert SdNotifier({**base, "WATCHDOG_USEC": "0"}).watchdog_interval_s() is None
    assert SdNotifier({**base, "WATCHDOG_USEC": "soon"}).watchdog_interval_s() is None


def test_watchdog_pings_are_rate_limited_to_half_the_interval(notify_socket) -> None:
    sock, path = notify_socket
    now = [100.0]
    notifier = SdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})  # 10 s
    pinger = WatchdogPinger(notifier, clock=lambda: now[0])
    assert pinger.period_s == 5.0
    sent = []
    for _ in range(200):  # 20 s of results at 10 per second
        sent.append(pinger.ping())
        now[0] += 0.1
    # First ping at once, then one every 5 s: t = 0, 5, 10, 15 (float steps may add one tick).
    assert sum(sent) == 4 and pinger.sent == 4
    ticks = [i for i, s in enumerate(sent) if s]
    assert ticks[0] == 0
    assert all(50 <= b - a <= 51 for a, b in zip(ticks, ticks[1:]))
    assert _drain(sock) == ["WATCHDOG=1"] * 4


def test_send_failure_is_logged_once_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert notifier.watchdog() is False
    assert notifier.watchdog() is False
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1


def test_relative_notify_socket_is_ignored() -> None:
    assert not SdNotifier({"NOTIFY_SOCKET": "relative/path"}).enabled
