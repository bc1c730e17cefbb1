"""The daemon as a service: sd_notify on a real socket, the watchdog on a stalled
pipeline, and the web preview's /health, /metrics and /classify on the real daemon."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgecam.bench.media import moving_frames, photo_bgr, write_video
from edgecam.config import parse_config
from edgecam.inference.pool import LoadedModel, model_key
from edgecam.model.classifier import Classifier
from edgecam.service.daemon import Daemon
from edgecam.sources.memory import MemorySource
from tests.support.daemon_process import DaemonProcess, write_config


@pytest.fixture
def notify_socket(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    yield sock, path
    sock.close()


def receive_all(sock: socket.socket, until: float) -> list[tuple[float, str]]:
    messages = []
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            messages.append((time.monotonic(), sock.recv(4096).decode()))
        except socket.timeout:
            break
    return messages


def test_sd_notify_sequence_from_edgecam_run(notify_socket, resnet_int8: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = notify_socket
    clip = write_video(tmp_path / "clip.avi", moving_frames(30), fps=30)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # 1 s: pings every 0.5 s
    config = write_config(tmp_path / "config.yaml", stats={"interval_s": 1})
    daemon = DaemonProcess(["--config", str(config), "--no-mqtt", "--source", str(clip), "--model",
                            str(resnet_int8)], tmp_path)
    try:
        messages: list[tuple[float, str]] = []
        deadline = time.monotonic() + 60  # start-up checks the model first: on a busy machine, seconds
        while not any(text.startswith("READY=1") for _, text in messages) and time.monotonic() < deadline:
            messages += receive_all(sock, time.monotonic() + 0.5)
        messages += receive_all(sock, time.monotonic() + 3.0)
        code, _ = daemon.terminate()
        messages += receive_all(sock, time.monotonic() + 0.5)
    finally:
        daemon.kill()
    assert code == 0
    texts = [text for _, text in messages]
    assert texts[0].startswith("READY=1"), texts[:3]
    assert any(t.startswith("STATUS=") and "fps" in t for t in texts), texts
    watchdogs = [at for at, text in messages if text == "WATCHDOG=1"]
    assert len(watchdogs) >= 4, texts
    # Rate-limited to one per half interval (0.5 s): ~30 results/s must not mean ~30 pings/s.
    # (Counted over the run, not per gap: receipt times jitter on a loaded machine.)
    span = messages[-1][0] - messages[0][0]
    assert len(watchdogs) <= span / 0.5 + 2, (len(watchdogs), span)
    assert texts[-1].startswith("STOPPING=1"), texts[-3:]
    # The first result printed before READY: READY means "model loaded and a frame classified".
    assert daemon.results(), "no results"


class GatedClassifier:
    """A real Classifier whose inference can be held, to simulate a hung model."""

    def __init__(self, inner: Classifier) -> None:
        self.inner = inner
        self.info = inner.info
        self.gate = threading.Event()
        self.gate.set()

    def probabilities(self, bgr: np.ndarray) -> np.ndarray:
        self.gate.wait()
        return self.inner.probabilities(bgr)

    def probabilities_batch(self, images):
        self.gate.wait()
        return self.inner.probabilities_batch(images)

    def top_k(self, probabilities: np.ndarray, k: int = 3):
        return self.inner.top_k(probabilities, k)

    def classify(self, bgr: np.ndarray, k: int = 3):
        return self.inner.classify(bgr, k)


def test_watchdog_stops_when_the_pipeline_stalls(notify_socket, resnet_int8: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # pings at most every 0.2 s
    config = parse_config({"device_id": "wd", "mqtt": {"enabled": False},
                           "model": {"path": str(resnet_int8), "threads": 1}})
    daemon = Daemon(config, stdout_results=False, source=MemorySource(moving_frames(10), fps=30))
    daemon.prepare()
    gated = GatedClassifier(daemon.pipeline.layout.default_classifier())
    key = model_key(resnet_int8)

    def wedge(layout):
        return layout.next(models={key: LoadedModel(gated, layout.models[key].stamp)}), None

    daemon.pipeline.update(wedge, "test")
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        flowing = receive_all(sock, time.monotonic() + 1.5)
        gated.gate.clear()  # inference hangs inside the model
        time.sleep(0.3)
        receive_all(sock, time.monotonic() + 0.05)  # drop pings sent before the stall began
        stalled = receive_all(sock, time.monotonic() + 1.5)
        gated.gate.set()
        resumed = receive_all(sock, time.monotonic() + 1.0)
    finally:
        gated.gate.set()
        daemon.stop()
        runner.join(timeout=5)
    assert sum(text == "WATCHDOG=1" for _, text in flowing) >= 4
    assert [text for _, text in stalled if text == "WATCHDOG=1"] == [], "pinged while stalled"
    assert sum(text == "WATCHDOG=1" for _, text in resumed) >= 2


def http(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "image/jpeg"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def metric_values(text: str) -> dict[str, float]:
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


def test_web_preview_on_the_real_daemon(effnet_models, tmp_path: Path) -> None:
    effnet_int8 = effnet_models.int8
    clip = write_video(tmp_path / "clip.avi", moving_frames(30, size=(320, 240)), fps=30)
    moving = tmp_path / "moving.avi"
    shutil.copy(clip, moving)
    config = parse_config({
        "device_id": "web", "mqtt": {"enabled": False}, "model": {"path": str(effnet_int8), "threads": 1},
        "source": {"uri": str(moving), "loop": True, "backoff": {"initial_s": 0.2, "max_s": 0.4}},
        "preview": {"http": {"enabled": True, "port": 0}}, "stats": {"interval_s": 0.5}})
    daemon = Daemon(config, stdout_results=False)
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        base = _wait_for_server(daemon)
        _wait_status(f"{base}/health", 200)
        first = metric_values(http(f"{base}/metrics")[1].decode())
        time.sleep(1.2)
        second = metric_values(http(f"{base}/metrics")[1].decode())
        status, jpeg = http(f"{base}/latest.jpg")
        assert status == 200 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None

        ok, cat_jpeg = cv2.imencode(".jpg", photo_bgr("chelsea"))
        status, body = http(f"{base}/classify", cat_jpeg.tobytes())
        labels = [t["label"] for t in json.loads(body)["top"]]
        assert status == 200 and {"tabby", "tiger cat", "Egyptian cat"} & set(labels), labels
        assert http(f"{base}/classify", b"")[0] == 400
        assert http(f"{base}/classify", b"not an image at all")[0] == 415

        moving.rename(tmp_path / "away.avi")  # camera unplugged
        status, body = _wait_status(f"{base}/health", 503)
        assert "source" in json.loads(body)["reason"]
        (tmp_path / "away.avi").rename(moving)  # and back
        _wait_status(f"{base}/health", 200)
    finally:
        daemon.stop()
        runner.join(timeout=5)
    captured = "edgecam_frames_captured_total"
    assert second[captured] > first[captured] > 0, (first.get(captured), second.get(captured))


def _wait_for_server(daemon: Daemon) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        servers = [extra for extra in daemon._extras if getattr(extra, "port", None)]
        if servers:
            return f"http://127.0.0.1:{servers[0].port}"
        time.sleep(0.05)
    raise AssertionError("web preview did not start")


def _wait_status(url: str, expected: int, timeout: float = 20.0) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    status, body = http(url)
    while status != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        status, body = http(url)
    assert status == expected, (status, body[:200])
    return status, body



@pytest.mark.parametrize("under_systemd", [True, False])
def test_log_lines_carry_timestamps_only_outside_systemd(resnet_int8: Path, tmp_path: Path, under_systemd: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    if under_systemd:
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # what systemd sets for a service's stderr
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    clip = write_video(tmp_path / "clip.avi", moving_frames(10), fps=30)
    daemon = DaemonProcess(["--no-mqtt", "--source", str(clip), "--model", str(resnet_int8), "--duration", "1"],
                           tmp_path)
    assert daemon.wait_exit(timeout=60) == 0
    ready = next(line for line in daemon.errors if "ready: first frame classified" in line)
    if under_systemd:
        # journald adds the time; the <6> prefix gives it the syslog priority (info).
        assert ready.startswith("<6>edgecam.service.daemon: ready"), ready
        assert any(line.startswith("<4>") for line in daemon.errors), "the UNTRAINED warning is priority 4"
    else:
        assert ready[:4].isdigit() and " INFO " in ready, ready
