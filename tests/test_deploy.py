"""New models without a restart: SIGHUP, MQTT `reload` and an authenticated HTTP upload.

The daemon runs as a real process on a real video; the models are real (ResNet-18
random and EfficientNet-Lite0 ImageNet, both built by the project's own code).
A swap must not stop the results (no gap), a broken model must leave the old one
running, and the same process keeps running throughout.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from edgecam.bench.media import moving_frames, write_video
from edgecam.config import load_config
from tests.support.daemon_process import DaemonProcess, write_config
from tests.support.mqtt import Collector, free_port, wait_until

RESNET, EFFNET = "resnet18_160_int8", "efficientnet_lite0_160_int8"


def replace_file(source: Path, target: Path) -> None:
    """As a user deploys: write next to it, then rename over it (atomic)."""
    staged = target.with_name(target.name + ".new")
    shutil.copy(source, staged)
    os.replace(staged, target)


def model_names(results: list[dict]) -> list[str]:
    return [r["model"]["name"] for r in results]


def largest_gap_s(results: list[dict]) -> float:
    stamps = [datetime.fromisoformat(r["captured_at"].replace("Z", "+00:00")).timestamp() for r in results]
    return max(b - a for a, b in zip(stamps, stamps[1:]))


def test_sighup_swaps_a_changed_model_file_without_a_gap(resnet_int8: Path, effnet_models, tmp_path: Path) -> None:
    model = tmp_path / "current.onnx"
    shutil.copy(resnet_int8, model)
    clip = write_video(tmp_path / "clip.avi", moving_frames(30), fps=30)
    daemon = DaemonProcess(["--no-mqtt", "--source", str(clip), "--model", str(model)], tmp_path)
    try:
        assert daemon.wait_for(lambda: len(daemon.results()) >= 20, timeout=60), daemon.errors[-5:]
        replace_file(effnet_models.int8, model)
        daemon.proc.send_signal(signal.SIGHUP)
        assert daemon.wait_for(lambda: EFFNET in model_names(daemon.results()[-3:]), timeout=30), daemon.errors[-5:]
        count = len(daemon.results())
        assert daemon.wait_for(lambda: len(daemon.results()) >= count + 20, timeout=30)
        assert daemon.proc.poll() is None, "the daemon must not restart"
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    results = daemon.results()
    names = model_names(results)
    switch = names.index(EFFNET)
    assert set(names[:switch]) == {RESNET} and set(names[switch:]) == {EFFNET}  # one clean switch
    assert largest_gap_s(results) < 1.0, "results stopped during the swap"
    assert any("model file current.onnx changed on disk: reloaded" in line for line in daemon.errors)
    assert code == 0


def test_mqtt_reload_keeps_the_old_model_when_the_new_file_is_broken(broker, resnet_int8: Path, effnet_models,
                                                                     tmp_path: Path) -> None:
    model = tmp_path / "current.onnx"
    shutil.copy(resnet_int8, model)
    clip = write_video(tmp_path / "clip.avi", moving_frames(30), fps=30)
    config = write_config(tmp_path / "config.yaml", device_id="swap", model={"path": str(model), "threads": 1},
                          source={"uri": str(clip)}, mqtt={"host": broker.host, "port": broker.port})
    collector = Collector(broker, ["edgecam/swap/#"])
    daemon = DaemonProcess(["--config", str(config)], tmp_path)

    def reload() -> dict:
        before = len(collector.messages("edgecam/swap/cmd/response"))
        collector.client.publish("edgecam/swap/cmd", b'{"cmd": "reload", "id": 1}', qos=1)
        return collector.wait_for("edgecam/swap/cmd/response", before + 1, timeout=30)[before].json()

    try:
        collector.wait_for("edgecam/swap/result", 5, timeout=60)
        model.write_bytes(model.read_bytes()[:5000])  # a truncated copy: not a model
        reply = reload()
        assert reply["ok"] is False and "current.onnx" in reply["error"] and "not a valid ONNX" in reply["error"]
        wait_until(lambda: "current.onnx" in json.dumps(collector.messages("edgecam/swap/state")[-1].json()
                                                        ["model_errors"]), 10, "the error in the state topic")
        count = len(collector.messages("edgecam/swap/result"))
        collector.wait_for("edgecam/swap/result", count + 10, timeout=20)  # still classifying, old model
        assert set(model_names([m.json() for m in collector.messages("edgecam/swap/result")])) == {RESNET}

        replace_file(effnet_models.int8, model)
        reply = reload()
        assert reply["ok"] is True and reply["reloaded"] == ["current.onnx"], reply
        assert reply["changes"] == ["model file current.onnx changed on disk: reloaded"], reply
        deadline = time.monotonic() + 20
        while EFFNET not in model_names([m.json() for m in collector.messages("edgecam/swap/result")][-3:]):
            assert time.monotonic() < deadline, "the new model never answered"
            time.sleep(0.1)
        assert collector.messages("edgecam/swap/state")[-1].json()["model"]["name"] == EFFNET
        again = reload()
        assert again["reloaded"] == [] and again["changes"] == []  # nothing changed since: nothing to do
        assert daemon.proc.poll() is None
    finally:
        collector.close()
        daemon.kill()


def _post(url: str, data: bytes, content_type: str, auth: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_an_uploaded_model_for_one_region_is_checked_then_swapped_in(resnet_int8: Path, effnet_models,
                                                                     tmp_path: Path) -> None:
    door_model = tmp_path / "door.onnx"
    shutil.copy(resnet_int8, door_model)
    default_model = tmp_path / "models" / "default.onnx"
    default_model.parent.mkdir()
    shutil.copy(resnet_int8, default_model)
    clip = write_video(tmp_path / "clip.avi", moving_frames(30), fps=30)
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml", device_id="upload", mqtt={"enabled": False},
        model={"path": str(default_model), "threads": 1},
        cameras={"porch": {"uri": str(clip), "regions": {"door": {"model": str(door_model)}, "step": {}}}},
        preview={"http": {"enabled": True, "port": port,
                          "auth": {"username": "admin", "password_file": str(secret)}}})
    daemon = DaemonProcess(["--config", str(config)], tmp_path)
    url = f"http://127.0.0.1:{port}/api/model?camera=porch&region=door"
    try:
        assert daemon.wait_for(lambda: len(daemon.results()) >= 10, timeout=60), daemon.errors[-5:]
        status, _ = _post(url, b"\x08\x01", "application/octet-stream", None)
        assert status == 401
        status, body = _post(url, b"\x08\x01" + os.urandom(3000), "application/octet-stream", "admin:s3cret")
        assert status == 422 and "keeps running" in body["error"], body
        count = len(daemon.results())
        assert daemon.wait_for(lambda: len(daemon.results()) >= count + 10, timeout=20)
        status, body = _post(url, effnet_models.int8.read_bytes(), "application/octet-stream", "admin:s3cret")
        assert status == 200 and body["name"] == EFFNET and body["previous"] == str(door_model), body
        uploaded = Path(body["model"])  # a name of its own: never over a file another region uses
        assert uploaded.parent == default_model.parent / "uploads" / "porch" / "door", body
        assert daemon.wait_for(lambda: any(r["region"] == "door" and r["model"]["name"] == EFFNET
                                           for r in daemon.results()[-6:]), timeout=20)
        assert uploaded.read_bytes() == effnet_models.int8.read_bytes()
        assert door_model.read_bytes() == resnet_int8.read_bytes()  # the previous model, kept for a rollback
        assert default_model.read_bytes() == resnet_int8.read_bytes()  # the shared default: untouched
        assert body["persisted"] is True  # kept across restarts: the config file names it
        assert load_config(config).cameras["porch"].regions["door"].model == str(uploaded)
        step = [r for r in daemon.results()[-10:] if r["region"] == "step"]
        assert step and {r["model"]["name"] for r in step} == {RESNET}, "only the door's model changed"
        assert daemon.proc.poll() is None
    finally:
        daemon.kill()
