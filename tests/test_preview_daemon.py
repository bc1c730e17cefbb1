"""Decompression bombs against the real daemon (`edgecam run` on the demo
camera, a real model): every bomb is refused, the daemon's peak RSS stays
within BOMB_RSS_MARGIN of what it was before, and the camera keeps its result
rate. OpenCV's own pixel limit is the second fence (issue 11, point 1)."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from edgecam.bench import bombs
from edgecam.bench.media import photo_bgr
from tests.support.daemon_process import DaemonProcess, write_config

BOMB_RSS_MARGIN = 64 * 1024 * 1024  # peak RSS growth allowed while bombs are thrown
PNG = {"Content-Type": "image/png"}


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/classify", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _port(daemon: DaemonProcess) -> int:
    found: list[int] = []

    def started() -> bool:
        found.extend(int(m.group(1)) for line in list(daemon.errors)
                     if (m := re.search(r"web preview on http://127\.0\.0\.1:(\d+)/", line)))
        return bool(found)

    assert daemon.wait_for(started, 60), "\n".join(daemon.errors[-20:])
    return found[0]


@pytest.fixture
def daemon(resnet_int8: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "config.yaml", source={"uri": "demo", "fps": 30},
                          preview={"http": {"enabled": True, "port": 0}}, mqtt={"enabled": False},
                          model={"path": str(resnet_int8), "threads": 1})
    proc = DaemonProcess(["--config", str(config)], tmp_path)
    try:
        yield proc
    finally:
        proc.kill()


def _result_rate(daemon: DaemonProcess, seconds: float, during=None) -> float:  # type: ignore[no-untyped-def]
    before, started = len(daemon.results()), time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        if during is not None:
            during()
        else:
            time.sleep(0.05)
    return (len(daemon.results()) - before) / (time.monotonic() - started)


def test_bombs_leave_the_daemons_memory_and_camera_alone(daemon: DaemonProcess) -> None:
    port = _port(daemon)
    assert daemon.wait_for(lambda: len(daemon.results()) >= 10, 60)
    cat = cv2.imencode(".jpg", photo_bgr("chelsea"))[1].tobytes()
    assert _post(port, cat, {"Content-Type": "image/jpeg"})[0] == 200  # warm the upload path
    big = cv2.imencode(".jpg", cv2.resize(photo_bgr("chelsea"), (4000, 3000)))[1].tobytes()
    assert _post(port, big, {"Content-Type": "image/jpeg"})[0] == 200  # decoded at 1/8
    idle_rate = _result_rate(daemon, 3.0)
    idle_peak = _peak_rss(daemon.proc.pid)

    thrown = [bombs.png(20000, 20000), bombs.jpeg(20000, 20000), bombs.png(30000, 30000),
              bombs.jpeg(20000, 20000, progressive=True), bombs.bmp(20000, 20000), bombs.webp(16384, 16384),
              bombs.tiff(20000, 20000), bombs.gif(65535, 65535), bombs.pnm(20000, 20000), big]

    def throw() -> None:
        for data in thrown:
            status, body = _post(port, data, PNG)
            assert status == (200 if data is big else 413), body[:200]
            growth = _peak_rss(daemon.proc.pid) - idle_peak
            assert growth < BOMB_RSS_MARGIN, f"peak RSS grew by {growth / 2**20:.0f} MB"

    bomb_rate = _result_rate(daemon, 3.0, during=throw)
    assert idle_rate > 5, idle_rate
    assert bomb_rate >= 0.5 * idle_rate, (idle_rate, bomb_rate)
    assert daemon.proc.poll() is None


def test_opencv_refuses_huge_pictures_as_a_second_fence() -> None:
    """The daemon imports edgecam before cv2, so OpenCV's limit is in force even
    for a picture the header check would not see (here: imdecode called directly)."""
    child = (
        "import edgecam, cv2, numpy as np, re\n"
        "from edgecam.bench import bombs\n"
        "try:\n"
        "    image = cv2.imdecode(np.frombuffer(bombs.png(12000, 12000), np.uint8), cv2.IMREAD_COLOR)\n"
        "except cv2.error as err:\n"  # OpenCV 5 raises, 4.x returns None
        "    image = None if 'CV_IO_MAX_IMAGE_PIXELS' in str(err) else err\n"
        "peak = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
        "print(image is None, int(peak) // 1024)\n"  # not ru_maxrss: that keeps the forking parent's peak
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    refused, peak_mb = proc.stdout.split()
    assert refused == "True", proc.stdout + proc.stderr
    assert int(peak_mb) < 300  # 12000 x 12000 x 3 would be 412 MB
