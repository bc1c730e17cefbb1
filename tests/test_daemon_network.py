"""The daemon makes no connection its user did not configure, and a stop never waits on DNS.

Both run `edgecam run` as a real process: under strace (every connect/sendto of
every thread recorded), and inside a network namespace where DNS queries vanish
(a veth with a default route to a host that does not exist), as on a Pi whose
resolver is down.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecam.bench.media import moving_frames, write_video
from tests.support.daemon_process import DaemonProcess

_INET = re.compile(r'sa_family=AF_INET6?, sin6?_port=htons\((\d+)\).*?(?:inet_addr|inet_pton\(AF_INET6?)\("([^"]+)"\)')
BLACKHOLE_DNS = ("ip link set lo up && ip link add v0 type veth peer name v1 && ip link set v0 up && "
                 "ip link set v1 up && ip addr add 10.99.0.1/24 dev v0 && ip route add default via 10.99.0.2")


def inet_destinations(trace: str) -> list[tuple[str, int, str]]:
    """(syscall, port, address) of every IPv4/IPv6 connect or sendto in an strace log,
    leaving out connections to the process's own listening sockets (paho's wake-up
    socketpair is a loopback listener it binds and connects to itself)."""
    found = []
    for line in trace.splitlines():
        call = re.search(r"\b(bind|getsockname|connect|sendto|sendmsg|sendmmsg)\(", line)
        match = _INET.search(line)
        if call and match:
            found.append((call.group(1), int(match.group(1)), match.group(2)))
    own = {(port, addr) for call, port, addr in found if call in ("bind", "getsockname")}
    return [item for item in found if item[0] not in ("bind", "getsockname") and item[1:] not in own]


def test_a_full_run_connects_only_to_the_configured_broker(broker, resnet_int8: Path, tmp_path: Path) -> None:
    strace = shutil.which("strace")
    assert strace, "strace is installed by scripts/setup.sh --dev"
    clip = write_video(tmp_path / "clip.avi", moving_frames(30), fps=30)
    log = tmp_path / "strace.txt"
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}  # edgecam's own default
    proc = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=bind,getsockname,connect,sendto,sendmsg,sendmmsg", "-o", str(log),
         sys.executable, "-m", "edgecam", "run", "--source", str(clip), "--model", str(resnet_int8),
         "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--duration", "4", "--device-id", "net"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MQTT: connected" in proc.stderr
    destinations = inet_destinations(log.read_text())
    assert destinations, "strace saw no connection at all: the broker connect must show"
    assert {(port, addr) for _, port, addr in destinations} == {(broker.port, "127.0.0.1")}, destinations


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs as root)")
def test_sigterm_exits_within_3_s_while_dns_is_unreachable(resnet_int8: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.avi", moving_frames(30), fps=30)
    args = ["--source", str(clip), "--model", str(resnet_int8), "--stdout",
            "--mqtt-host", "broker.edgecam-test.example", "--device-id", "nodns"]
    launcher = ["unshare", "--net", "--", "sh", "-c", f'{BLACKHOLE_DNS} && exec "$@"', "sh",
                sys.executable, "-m", "edgecam"]
    daemon = DaemonProcess(args, tmp_path, launcher=launcher)
    try:
        assert daemon.wait_for(lambda: len(daemon.results()) >= 10, timeout=60), daemon.errors[-5:]
        time.sleep(1.0)  # paho is now inside getaddrinfo(), waiting on a resolver that never answers
        code, elapsed = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0, daemon.errors[-5:]
    assert elapsed < 3.0, f"exit took {elapsed:.1f} s"
