"""A model is accepted only after it works, and a region's fault stays in that region.

Every hostile model here is a real ONNX file (edgecam.bench.hostile_models), checked
by the real check process; the daemon tests run a real daemon (two cameras, real
models, the real web app over HTTP). The cameras are fed from memory so a test can
turn a scene bright at the moment it needs to.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import yaml

from edgecam.bench import hostile_models
from edgecam.bench.media import moving_frames
from edgecam.config import ModelChecksConfig, load_config
from edgecam.inference.vet import ModelChecker, run_check, stand_in_frames
from edgecam.service.daemon import Daemon
from edgecam.sources.memory import MemorySource
from tests.support.mqtt import wait_until

DARK = np.full((240, 320, 3), 12, np.uint8)
BRIGHT = np.full((240, 320, 3), 244, np.uint8)


# -- the check process ------------------------------------------------------------------
@pytest.mark.parametrize("make, checks, reason", [
    (hostile_models.nan_on_real_frames, {}, "finite"),
    (hostile_models.huge_input, {}, "more than model.checks.max_input_size (640)"),
    (hostile_models.memory_hog, {}, "more than model.checks.max_memory_mb (512"),
    (hostile_models.slow, {}, "more than model.checks.max_run_ms (1000)"),
    (hostile_models.slow, {"max_load_s": 1.0, "max_run_ms": 60000}, "longer than model.checks.max_load_s (1 s)"),
], ids=["nan", "huge-input", "memory-hog", "slow-run", "slow-load"])
def test_a_hostile_model_is_refused_by_the_check_with_its_reason(tmp_path: Path, make: Any, checks: dict,
                                                                  reason: str) -> None:
    path = make(tmp_path / "model.onnx")
    started = time.monotonic()
    verdict = run_check(str(path), [DARK, *stand_in_frames()], ModelChecksConfig(**checks), threads=2)
    assert not verdict.ok and reason in verdict.reason, verdict
    assert time.monotonic() - started < 30, "the check must be bounded"


def test_a_model_that_passes_on_dark_frames_fails_on_bright_ones(tmp_path: Path) -> None:
    path = hostile_models.nan_when_bright(tmp_path / "model.onnx")
    assert run_check(str(path), [DARK], ModelChecksConfig(), 1).ok
    assert not run_check(str(path), [BRIGHT], ModelChecksConfig(), 1).ok


def test_a_verdict_is_remembered_by_the_files_content(tmp_path: Path, resnet_int8: Path) -> None:
    checker = ModelChecker(ModelChecksConfig(), 1, cache=tmp_path / "checked.json")
    started = time.monotonic()
    assert checker.check(str(resnet_int8), stand_in_frames(), remember=True).ok
    first = time.monotonic() - started
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(resnet_int8.read_bytes())
    started = time.monotonic()
    assert checker.check(str(copy), stand_in_frames(), remember=True).ok  # same bytes: known
    assert time.monotonic() - started < first / 3
    bad = hostile_models.nan_on_real_frames(tmp_path / "bad.onnx")
    assert not checker.check(str(bad), stand_in_frames(), remember=True).ok
    assert len(json.loads((tmp_path / "checked.json").read_text())) == 2


# -- the daemon ---------------------------------------------------------------------------
class Scene(MemorySource):
    """A camera whose scene the test switches (dark / bright)."""

    def show(self, frame: np.ndarray) -> None:
        self._frames = [frame]


class Rig:
    def __init__(self, tmp: Path, resnet: Path, x_model: Path | None = None, **http: Any) -> None:
        secret = tmp / "password"
        secret.write_text("s3cret\n")
        secret.chmod(0o600)
        (tmp / "models").mkdir(exist_ok=True)
        default = tmp / "models" / "default.onnx"
        default.write_bytes(resnet.read_bytes())
        x = {"box": [0.0, 0.0, 0.5, 0.5], **({"model": str(x_model)} if x_model else {})}
        self.file = tmp / "config.yaml"
        self.file.write_text(yaml.safe_dump({
            "device_id": "faults", "mqtt": {"enabled": False},
            "model": {"path": str(default), "threads": 1, "checks": {"rollback_after": 5}},
            "preview": {"http": {"enabled": True, "port": 0, "auth": {"username": "u", "password_file": str(secret)},
                                 **http}},
            "cameras": {"a": {"uri": "memory", "regions": {"x": x, "y": {"box": [0.5, 0.5, 1.0, 1.0]}}},
                        "b": {"uri": "memory"}}}))
        self.scene = Scene([DARK], fps=15, source_id="scene")
        self.daemon = Daemon(load_config(self.file), stdout_results=False, config_path=str(self.file),
                             read_config=lambda: load_config(self.file),
                             sources={"a": self.scene, "b": MemorySource(moving_frames(8), fps=15)})
        self.runner = threading.Thread(target=self.daemon.run)
        self.runner.start()
        wait_until(lambda: any(getattr(e, "port", None) for e in self.daemon._extras), 60, "the web app")
        self.port = next(e.port for e in self.daemon._extras if getattr(e, "port", None))
        wait_until(lambda: self.processed("b") > 5 and self.processed("a") > 5, 60, "results")

    def processed(self, camera: str) -> int:
        return self.daemon.inference.processed[camera]

    def region(self, camera: str, name: str) -> Any:
        return self.daemon.pipeline.layout.region(camera, name)

    def upload(self, data: bytes) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/model?camera=a&region=x", data=data, method="POST",
            headers={"Content-Type": "application/octet-stream",
                     "Authorization": "Basic " + base64.b64encode(b"u:s3cret").decode()})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def rate(self, camera: str, seconds: float) -> float:
        start = self.processed(camera)
        time.sleep(seconds)
        return (self.processed(camera) - start) / seconds

    def stop(self) -> None:
        self.daemon.stop()
        self.runner.join(timeout=20)


@pytest.fixture
def rig(tmp_path: Path, resnet_int8: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path, resnet_int8)
    yield rig
    rig.stop()


def test_an_upload_that_fails_on_live_frames_is_refused_and_the_old_model_runs(rig: Rig, tmp_path: Path) -> None:
    before = rig.region("a", "x").model_path
    status, body = rig.upload(hostile_models.nan_on_real_frames(tmp_path / "nan.onnx").read_bytes())
    assert status == 422 and "finite" in body["error"] and "keeps running" in body["error"], body
    assert rig.region("a", "x").model_path == before
    assert "finite" in json.dumps(rig.daemon.status.state()["model_errors"])


def test_a_new_model_failing_on_live_frames_is_rolled_back_and_the_rest_goes_on(rig: Rig, tmp_path: Path) -> None:
    previous = rig.region("a", "x").model_path
    b_rate = rig.rate("b", 2.0)
    bright_model = hostile_models.nan_when_bright(tmp_path / "bright.onnx")
    reply: dict[str, Any] = {}
    uploading = threading.Thread(target=lambda: reply.update(zip(("status", "body"), rig.upload(
        bright_model.read_bytes()))))
    uploading.start()  # checked on the dark scene: it passes, and runs on probation
    wait_until(lambda: rig.region("a", "x").model_path != previous, 60, "the new model running")
    rig.scene.show(BRIGHT)  # ... and fails on every frame from now on
    uploading.join(timeout=60)
    body = reply["body"]
    assert reply["status"] == 200 and body["outcome"] == "rolled back" and body["rolled_back"] is True, body
    assert "finite" in body["error"], body
    region = rig.region("a", "x")
    assert region.model_path == previous and region.faults.rollbacks == 1
    assert rig.daemon.pipeline.journal[-1].what == "rollback"
    state = rig.daemon.status.state()["cameras"]["a"]["regions"]["x"]
    assert state["rollbacks"] == 1
    wait_until(lambda: region.faults.failing is None, 10, "the previous model answering again")
    assert rig.rate("b", 2.0) > 0.6 * b_rate, "the other camera must not slow down"
    assert load_config(rig.file).cameras["a"].regions["x"].model == previous  # kept in the file too


def test_a_failing_region_with_nothing_to_go_back_to_is_in_error_and_the_others_run(
        tmp_path: Path, resnet_int8: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam")
    rig = Rig(tmp_path, resnet_int8, x_model=hostile_models.nan_when_bright(tmp_path / "bright.onnx"))
    try:
        b_rate = rig.rate("b", 2.0)
        y = rig.region("a", "y")
        rig.scene.show(BRIGHT)
        wait_until(lambda: rig.region("a", "x").faults.failing is not None, 20, "region a/x failing")
        ok, reason = rig.daemon.health.health()
        assert not ok and "region a/x" in reason and "finite" in reason, reason
        assert rig.daemon.status.state()["cameras"]["a"]["regions"]["x"]["state"] == "error"
        y_before = y.processed
        assert rig.rate("b", 3.0) > 0.6 * b_rate, "the other camera must not slow down"
        assert y.processed > y_before + 10, "the camera's other region must go on"
        assert rig.daemon.inference.error is None and rig.runner.is_alive()
        failing_lines = [r for r in caplog.records if "its model failed" in r.getMessage()]
        assert 1 <= len(failing_lines) <= 2, [r.getMessage() for r in failing_lines]  # not one per frame
    finally:
        rig.stop()


def test_an_upload_that_keeps_arriving_is_never_cut_off_but_a_drip_is(tmp_path: Path, resnet_int8: Path) -> None:
    """request_timeout_s is 2 s here: a 260 KB model arriving at ~60 KB/s (4 s) gets through,
    because each byte buys time; a client dripping a byte every 0.5 s is cut off at 2 s."""
    rig = Rig(tmp_path, resnet_int8, request_timeout_s=2)
    try:
        model = hostile_models.slow(tmp_path / "plain.onnx", matmuls=1, side=256).read_bytes()
        head = (f"POST /api/model?camera=a&region=x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(model)}\r\n"
                f"Authorization: Basic {base64.b64encode(b'u:s3cret').decode()}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", rig.port), timeout=120) as sock:
            sock.sendall(head)
            started = time.monotonic()
            for at in range(0, len(model), 8192):
                sock.sendall(model[at:at + 8192])
                time.sleep(0.13)
            answer = _read_all(sock)
        assert time.monotonic() - started > 3.5
        assert answer.startswith(b"HTTP/1.0 200 "), answer[:200]
        with socket.create_connection(("127.0.0.1", rig.port), timeout=30) as sock:
            sock.sendall(head)
            started = time.monotonic()
            sock.settimeout(0.5)
            answer = b""
            for byte in model[:40]:
                try:
                    sock.sendall(bytes([byte]))
                    answer = sock.recv(4096)
                except (socket.timeout, TimeoutError):
                    continue
                except OSError:
                    break
                if answer:
                    break
            assert answer.startswith(b"HTTP/1.0 408 ") and time.monotonic() - started < 6, answer[:100]
    finally:
        rig.stop()


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
