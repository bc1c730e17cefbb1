"""A fake systemd NOTIFY_SOCKET: a datagram socket the test reads, to count pings."""

from __future__ import annotations

import socket
import time
from pathlib import Path


class NotifyListener:
    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def receive(self, seconds: float) -> list[tuple[float, str]]:
        """Every datagram that arrives within ``seconds``: (monotonic time, text)."""
        until = time.monotonic() + seconds
        messages = []
        while time.monotonic() < until:
            self.sock.settimeout(max(0.01, until - time.monotonic()))
            try:
                messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except socket.timeout:
                break
        return messages

    def pings(self, seconds: float) -> int:
        return sum(text == "WATCHDOG=1" for _, text in self.receive(seconds))

    def wait_for_pings(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline and seen < count:
            seen += self.pings(min(0.5, deadline - time.monotonic()))
        return seen >= count

    def close(self) -> None:
        self.sock.close()
