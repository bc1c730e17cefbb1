"""The watchdog and /health mean "results are flowing" (issue: the CI gate and liveness).

Each case runs `edgecam run` as a real process with a fake NOTIFY_SOCKET that counts
WATCHDOG=1 pings (WATCHDOG_USEC=1 s: a ping at most every 0.5 s while healthy):
a wedged classifier (then paused, then with the camera lost), a camera whose pipe
goes silent, and a stdout pipe that nobody reads.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.bench.media import moving_frames, write_video
from edgecam.model import cpu
from tests.support.daemon_process import DaemonProcess, write_config
from tests.support.mqtt import Collector, free_port
from tests.support.notify import NotifyListener

WEDGED = [sys.executable, str(Path(__file__).parent / "support" / "wedged_daemon.py")]
QUIET_S = 3.0  # a window with no ping in it: 6 missed pings at the 0.5 s cadence


@pytest.fixture
def notify(tmp_path: Path):
    listener = NotifyListener(tmp_path)
    yield listener
    listener.close()


def watchdog_env(notify: NotifyListener, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000", **extra}


def health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_health(port: int, status: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    code, body = 0, {}
    while time.monotonic() < deadline:
        try:
            code, body = health(port)
        except OSError:
            code = 0
        if code == status:
            return body
        time.sleep(0.1)
    raise AssertionError(f"/health never answered {status}: last {code} {body}")


def command(collector: Collector, prefix: str, payload: dict, timeout: float = 10) -> dict:
    topic = f"{prefix}/cmd/response"
    before = len(collector.messages(topic))
    collector.client.publish(f"{prefix}/cmd", json.dumps(payload).encode(), qos=1)
    return collector.wait_for(topic, before + 1, timeout=timeout)[before].json()


def test_a_wedged_classifier_stops_the_watchdog_even_when_paused_or_the_camera_is_lost(
        notify, broker, resnet_int8: Path, tmp_path: Path) -> None:
    gate = tmp_path / "wedge"
    clip = write_video(tmp_path / "clip.avi", moving_frames(60), fps=30)
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml", device_id="wedge", model={"path": str(resnet_int8), "threads": 1},
        source={"uri": str(clip), "loop": True, "backoff": {"initial_s": 0.2, "max_s": 0.5}},
        mqtt={"host": broker.host, "port": broker.port, "reconnect": {"initial_s": 0.2, "max_s": 1.0}},
        preview={"http": {"enabled": True, "port": port}})
    collector = Collector(broker, ["edgecam/wedge/#"])
    daemon = DaemonProcess(["--config", str(config)], tmp_path, launcher=WEDGED,
                           env=watchdog_env(notify, EDGECAM_TEST_WEDGE_FILE=str(gate)))
    try:
        assert notify.wait_for_pings(3, timeout=60), daemon.errors[-5:]
        wait_health(port, 200)

        gate.touch()  # the model hangs inside inference
        time.sleep(1.5)
        notify.receive(0.05)
        # A pause is applied by the inference thread between two turns: a wedged one cannot
        # take it, so it is refused (nothing changed) instead of hiding the hang.
        refused = command(collector, "edgecam/wedge", {"cmd": "pause"}, timeout=30)
        assert refused["ok"] is False and "inference thread" in refused["error"], refused
        assert notify.pings(QUIET_S) == 0, "pinged with inference wedged"
        body = wait_health(port, 503)
        assert "inference" in body["reason"], body

        gate.unlink()  # the model answers again
        assert notify.wait_for_pings(2, timeout=10)
        healthy = wait_health(port, 200)
        assert healthy["reason"] == "ok" and healthy["int8"] == cpu.auto().as_dict()
        assert command(collector, "edgecam/wedge", {"cmd": "pause"})["paused"] is True
        assert wait_health(port, 200)["reason"] == "paused"  # paused and alive is healthy
        command(collector, "edgecam/wedge", {"cmd": "resume"})

        gate.touch()
        clip.rename(tmp_path / "away.avi")  # and the camera is lost while it hangs
        time.sleep(1.5)
        notify.receive(0.05)
        assert notify.pings(QUIET_S) == 0, "pinged while the camera was lost and inference wedged"
        assert "inference" in wait_health(port, 503)["reason"]
    finally:
        gate.unlink(missing_ok=True)
        collector.close()
        daemon.kill()


def _feed_fifo(fifo: Path, clip_bytes: bytes, seconds: float, stop: threading.Event) -> None:
    """Write an MJPG AVI into the FIFO at about its frame rate, then go silent (fd kept open)."""
    fd = os.open(fifo, os.O_WRONLY)
    try:
        chunk = len(clip_bytes) // 200
        deadline = time.monotonic() + seconds
        offset = 0
        while time.monotonic() < deadline and offset < len(clip_bytes):
            os.write(fd, clip_bytes[offset:offset + chunk])
            offset += chunk
            time.sleep(0.05)
        stop.wait(120)  # silent, but the camera is still "plugged in"
    finally:
        os.close(fd)


def test_a_camera_whose_pipe_goes_silent_stops_the_watchdog_and_exits_promptly(
        notify, resnet_int8: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    avi = tmp_path / "noise.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 20, (320, 240))
    for _ in range(200):
        writer.write(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    writer.release()
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed_fifo, args=(fifo, avi.read_bytes(), 4.0, stop), daemon=True)
    feeder.start()
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml", device_id="fifo", log_level="DEBUG", mqtt={"enabled": False},
        model={"path": str(resnet_int8), "threads": 1}, preview={"http": {"enabled": True, "port": port}},
        source={"uri": f"file://{fifo}", "read_timeout_s": 1.0, "backoff": {"initial_s": 0.2, "max_s": 0.5}})
    daemon = DaemonProcess(["--config", str(config)], tmp_path, env=watchdog_env(notify))
    try:
        assert notify.wait_for_pings(3, timeout=60), daemon.errors[-5:]
        # The pipe goes silent ~4 s in: the read hangs in FFmpeg for good. Within the
        # stall limit (0.5 s + read_timeout_s) the pings must stop, and stay stopped.
        time.sleep(6.0)
        notify.receive(0.05)
        assert notify.pings(QUIET_S) == 0, "pinged while the camera read was hung"
        body = wait_health(port, 503)
        assert "hung" in body["reason"], body
        retries = [line for line in daemon.errors if "still lost" in line or "retrying" in line]
        assert len(retries) >= 2, "the capture loop should keep retrying (and say so at DEBUG)"
        code, elapsed = daemon.terminate()
        assert code == 0 and elapsed < 3.0, (code, elapsed)
    finally:
        stop.set()
        daemon.kill()


def test_stdout_that_nobody_reads_is_reported_and_does_not_hold_the_exit(
        notify, resnet_int8: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.avi", moving_frames(30), fps=30)
    port = free_port()
    config = write_config(tmp_path / "config.yaml", device_id="pipe", mqtt={"enabled": False},
                          model={"path": str(resnet_int8), "threads": 1},
                          source={"uri": str(clip), "loop": True},
                          preview={"http": {"enabled": True, "port": port}})
    daemon = DaemonProcess(["--config", str(config)], tmp_path, read_stdout=False, env=watchdog_env(notify))
    try:
        assert notify.wait_for_pings(2, timeout=60), daemon.errors[-5:]
        # 64 KiB of pipe buffer hold ~150 results: full after ~5 s at 30 results/s.
        body = wait_health(port, 503, timeout=40)
        assert "stdout is not being read" in body["reason"], body
        notify.receive(0.05)
        assert notify.pings(QUIET_S) == 0, "pinged while no result could get out"
        code, elapsed = daemon.terminate()
        assert code == 0 and elapsed < 3.0, (code, elapsed)
    finally:
        daemon.kill()


def test_a_port_in_use_is_one_error_line_and_exit_code_2(resnet_int8: Path, tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    clip = write_video(tmp_path / "clip.avi", moving_frames(10), fps=30)
    try:
        daemon = DaemonProcess(["--no-mqtt", "--source", str(clip), "--model", str(resnet_int8),
                                "--http-port", str(port)], tmp_path)
        code = daemon.wait_exit(timeout=60)
    finally:
        holder.close()
    assert code == 2, daemon.errors[-5:]
    errors = [line for line in daemon.errors if "error" in line.lower()]
    assert errors == [f"edgecam: error: preview.http: cannot listen on 127.0.0.1:{port}: Address already in use"], \
        daemon.errors
    assert not any("terminate called" in line for line in daemon.errors)
    assert daemon.results() == [], "no pipeline thread may start before the port is bound"
