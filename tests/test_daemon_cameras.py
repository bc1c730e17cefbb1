"""Several cameras and regions in one daemon, with real models, real video files and a
real Mosquitto: per-region answers and topics, debounced states, commands per camera
and region, a lost camera that does not slow the others, and the old layout unchanged."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.bench.media import moving_frames, photo_bgr, write_video
from edgecam.config import parse_config
from edgecam.errors import ConfigError, EndOfStream, ModelError
from edgecam.model.classifier import Classifier
from edgecam.publish.sink import Sink
from edgecam.service.daemon import Daemon
from edgecam.sources.base import FrameSource
from edgecam.sources.memory import MemorySource
from tests.support.daemon_process import DaemonProcess, write_config
from tests.support.mqtt import Collector, wait_until

CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}
DEVICE = "cams"
PREFIX = f"edgecam/{DEVICE}"


def side_by_side(count: int) -> list[np.ndarray]:
    """The kitchen: chelsea (a cat) on the left half, coffee (an espresso) on the right,
    with a little sensor noise so no two frames are equal."""
    scene = np.hstack([photo_bgr("chelsea", (320, 320)), photo_bgr("coffee", (320, 320))])
    rng = np.random.default_rng(7)
    return [np.clip(scene.astype(np.int16) + rng.integers(-3, 4, scene.shape), 0, 255).astype(np.uint8)
            for _ in range(count)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cams")
    return {"kitchen": write_video(folder / "kitchen.avi", side_by_side(30), fps=30),
            "yard": write_video(folder / "yard.avi", moving_frames(20), fps=10)}


def cameras_config(clips: dict[str, Path], effnet: Path, resnet: Path) -> dict:
    return {
        "kitchen": {"uri": str(clips["kitchen"]), "regions": {
            "cat": {"box": [0.0, 0.0, 0.5, 1.0], "confirm": 2},
            "cup": {"box": [0.5, 0.0, 1.0, 1.0], "confirm": 2}}},
        "yard": {"uri": str(clips["yard"]), "regions": {
            "whole": {"model": str(resnet), "trigger": "interval", "interval_s": 0.5}}},
    }


def command(collector: Collector, payload: dict) -> dict:
    topic = f"{PREFIX}/cmd/response"
    before = len(collector.messages(topic))
    collector.client.publish(f"{PREFIX}/cmd", json.dumps(payload).encode(), qos=1)
    return collector.wait_for(topic, before + 1, timeout=10)[before].json()


def test_two_cameras_three_regions_two_models_over_mqtt(broker, clips, effnet_models, resnet_int8,
                                                        tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.yaml", device_id=DEVICE, stats={"interval_s": 1},
        model={"path": str(effnet_models.int8), "threads": 1},
        cameras=cameras_config(clips, effnet_models.int8, resnet_int8),
        mqtt={"host": broker.host, "port": broker.port, "reconnect": {"initial_s": 0.2, "max_s": 1.0}})
    collector = Collector(broker, [f"{PREFIX}/#"])
    daemon = DaemonProcess(["--config", str(config)], tmp_path)
    cat, cup, yard = (f"{PREFIX}/{name}/result" for name in ("kitchen/cat", "kitchen/cup", "yard/whole"))
    try:
        for topic in (cat, cup, yard):
            collector.wait_for(topic, 3, timeout=90)
        cat_results = [m.json() for m in collector.messages(cat)]
        assert all(r["camera"] == "kitchen" and r["region"] == "cat" for r in cat_results)
        assert all(CAT_LABELS & {t["label"] for t in r["top"]} for r in cat_results), cat_results[0]["top"]
        cup_results = [m.json() for m in collector.messages(cup)]
        assert all("espresso" in {t["label"] for t in r["top"]} for r in cup_results), cup_results[0]["top"]
        yard_results = [m.json() for m in collector.messages(yard)]
        assert {r["model"]["name"] for r in yard_results} == {"resnet18_160_int8"}
        assert {r["model"]["name"] for r in cat_results + cup_results} == {"efficientnet_lite0_160_int8"}
        assert not collector.messages(f"{PREFIX}/result"), "the cameras layout has no <prefix>/result"

        # Debounced states: retained, and each message a change.
        state = collector.wait_for(f"{PREFIX}/kitchen/cat/state", 1, timeout=20)[0]
        assert state.json()["label"] in CAT_LABELS and state.json()["camera"] == "kitchen"

        # Commands per camera and per region.
        reply = command(collector, {"cmd": "pause", "camera": "yard"})
        assert reply["ok"] and reply["paused"] is True and reply["camera"] == "yard"
        time.sleep(1.0)
        yard_count, cat_count = len(collector.messages(yard)), len(collector.messages(cat))
        time.sleep(2.0)
        assert len(collector.messages(yard)) == yard_count, "the paused camera kept reporting"
        assert len(collector.messages(cat)) > cat_count + 5, "the other camera must carry on"
        reply = command(collector, {"cmd": "set", "camera": "kitchen", "region": "cup", "confirm": 4,
                                    "trigger": "interval", "interval_s": 1})
        assert reply["ok"] and reply["settings"]["confirm"] == 4 and reply["settings"]["trigger"] == "interval"
        bad = command(collector, {"cmd": "set", "camera": "kitchen", "region": "sofa", "confirm": 2})
        assert not bad["ok"] and "no region named 'sofa'" in bad["error"]
        status = command(collector, {"cmd": "status"})["state"]["cameras"]
        assert status["yard"]["paused"] is True and status["kitchen"]["paused"] is False
        assert status["kitchen"]["regions"]["cup"]["settings"]["confirm"] == 4
        code, _ = daemon.terminate()
    finally:
        collector.close()
        daemon.kill()
    assert code == 0

    for region in ("kitchen/cat", "kitchen/cup"):
        labels = [m.json()["label"] for m in collector.messages(f"{PREFIX}/{region}/state")]
        assert labels and all(a != b for a, b in zip(labels, labels[1:])), f"{region}: {labels}"
    last = collector.messages(f"{PREFIX}/kitchen/cat/state")[-1].json()
    late = Collector(broker, [f"{PREFIX}/kitchen/cat/state"])  # retained for late subscribers
    try:
        assert late.wait_for(f"{PREFIX}/kitchen/cat/state", 1)[0].json() == last
    finally:
        late.close()


class LockstepSource(FrameSource):
    """Hands out each scripted frame once, only after the daemon classified the previous
    one, then ends: the daemon sees exactly the script, whatever the machine's load."""

    source_id = "script"

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = list(frames)
        self.classified = threading.Semaphore(1)

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray:
        if not self.frames:
            raise EndOfStream("script done")
        while not self.classified.acquire(timeout=0.1):
            pass
        return self.frames.pop(0)

    def close(self) -> None:
        pass


class Recorder(Sink):
    name = "recorder"

    def __init__(self, source: LockstepSource | None = None) -> None:
        self.results: list = []
        self.states: list[dict] = []
        self.source = source

    def publish_result(self, result) -> None:
        self.results.append(result)
        if self.source is not None:
            self.source.classified.release()

    def publish_region_state(self, state: dict) -> None:
        self.states.append(state)


def test_debouncing_a_scripted_frame_sequence_in_the_daemon(effnet_models) -> None:
    classifier = Classifier(effnet_models.int8, threads=1)
    cat, cup = photo_bgr("chelsea"), photo_bgr("coffee")
    cat_label, cup_label = (classifier.classify(image)[0].label for image in (cat, cup))
    script = [cat] * 4 + [cup] * 2 + [cat] + [cup] * 3
    source = LockstepSource(script)
    recorder = Recorder(source)
    config = parse_config({"device_id": "script", "mqtt": {"enabled": False},
                           "model": {"path": str(effnet_models.int8), "threads": 1},
                           "cameras": {"desk": {"uri": "script", "loop": False,
                                                "regions": {"table": {"confirm": 3}}}}})
    daemon = Daemon(config, stdout_results=False, source=source, extra_sinks=[recorder])
    assert daemon.run() == 0  # ends by itself with the script
    assert [r.top[0].label for r in recorder.results] == [cat_label] * 4 + [cup_label] * 2 + [cat_label] + \
        [cup_label] * 3
    assert [(s["label"], s["previous"]) for s in recorder.states] == [(cat_label, None), (cup_label, cat_label)]
    assert {(s["camera"], s["region"]) for s in recorder.states} == {("desk", "table")}


def test_a_lost_camera_does_not_slow_the_other(resnet_int8: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "a.avi", moving_frames(30), fps=30)
    config = parse_config({
        "device_id": "two", "mqtt": {"enabled": False}, "model": {"path": str(resnet_int8), "threads": 1},
        "cameras": {"b": {"uri": "memory"},
                    "a": {"uri": str(clip), "backoff": {"initial_s": 0.2, "max_s": 0.4}}}})
    recorder = Recorder()
    daemon = Daemon(config, stdout_results=False, source=MemorySource(moving_frames(10), fps=20, source_id="mem"),
                    extra_sinks=[recorder])
    runner = threading.Thread(target=daemon.run)
    runner.start()

    def rate_of_b(seconds: float) -> float:
        before = sum(r.camera == "b" for r in recorder.results)
        time.sleep(seconds)
        return (sum(r.camera == "b" for r in recorder.results) - before) / seconds

    try:
        wait_until(lambda: {r.camera for r in recorder.results} == {"a", "b"}, 60, "both cameras")
        normal = rate_of_b(3.0)
        clip.rename(tmp_path / "away.avi")
        wait_until(lambda: not daemon.pipeline.layout.cameras["a"].camera.connected, 10, "camera a lost")
        during = rate_of_b(3.0)
        health = daemon.health.health()
        (tmp_path / "away.avi").rename(clip)
        wait_until(lambda: daemon.pipeline.layout.cameras["a"].camera.connected, 20, "camera a back")
    finally:
        daemon.stop()
        runner.join(timeout=10)
    assert normal > 12 and during >= 0.8 * normal, (normal, during)
    assert health[0] is False and "camera a" in health[1], health
    assert daemon.status.counters()["cameras"]["a"]["state"] in ("connected", "stopped")


def test_the_single_source_config_keeps_its_results_and_topic(broker, resnet_int8: Path, tmp_path: Path) -> None:
    frames = moving_frames(12)
    clip = write_video(tmp_path / "clip.avi", frames, fps=20)
    decoded = []
    capture = cv2.VideoCapture(str(clip))
    while (frame := capture.read()[1]) is not None:
        decoded.append(frame)
    config = write_config(tmp_path / "config.yaml", device_id="old", source={"uri": str(clip), "loop": True},
                          model={"path": str(resnet_int8), "threads": 1},
                          mqtt={"host": broker.host, "port": broker.port})
    collector = Collector(broker, ["edgecam/old/#"])
    daemon = DaemonProcess(["--config", str(config)], tmp_path)
    try:
        results = [m.json() for m in collector.wait_for("edgecam/old/result", 8, timeout=60)]
        daemon.terminate()
    finally:
        collector.close()
        daemon.kill()
    classifier = Classifier(resnet_int8, threads=1)
    for result in results:
        expected = classifier.classify(decoded[result["seq"] % len(decoded)], k=3)
        assert [t["label"] for t in result["top"]] == [t.label for t in expected]
        assert np.allclose([t["score"] for t in result["top"]], [t.score for t in expected], atol=1e-4)
        assert (result["camera"], result["region"]) == ("default", "full")


def test_unknown_or_unreadable_region_models_name_the_key(tmp_path: Path, resnet_int8: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    for model, message in [(str(tmp_path / "missing.onnx"), "does not exist"), (str(broken), "not a valid ONNX")]:
        config = parse_config({"model": {"path": str(resnet_int8)}, "mqtt": {"enabled": False},
                               "cameras": {"gate": {"uri": "demo", "regions": {"latch": {"model": model}}}}})
        with pytest.raises(ModelError, match=f"cameras.gate.regions.latch.model: .*{message}"):
            Daemon(config, stdout_results=False).prepare()  # the only region: nothing could run


def test_a_bad_region_model_at_start_disables_that_region_only(tmp_path: Path, resnet_int8: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(resnet_int8.read_bytes()[:5000])  # a truncated copy
    config = parse_config({"model": {"path": str(resnet_int8)}, "mqtt": {"enabled": False},
                           "cameras": {"gate": {"uri": "demo", "regions": {"latch": {"model": str(broken)},
                                                                         "yard": {}}}}})
    daemon = Daemon(config, stdout_results=False)
    daemon.prepare()
    layout = daemon.pipeline.layout
    assert [r.name for r in layout.cameras["gate"].regions] == ["yard"]
    assert "cameras.gate.regions.latch.model" in layout.errors["gate/latch"]
    state = daemon.status.state()["cameras"]["gate"]["regions"]
    assert state["latch"]["state"] == "error" and "not a valid ONNX" in state["latch"]["error"]


def test_regions_sharing_a_model_file_share_one_session(resnet_int8: Path, tmp_path: Path) -> None:
    alias = tmp_path / "same.onnx"
    shutil.copy(resnet_int8, alias)
    config = parse_config({"model": {"path": str(resnet_int8)}, "mqtt": {"enabled": False}, "cameras": {
        "a": {"uri": "demo", "regions": {"x": {}, "y": {"model": str(resnet_int8)}}},
        "b": {"uri": "demo", "regions": {"z": {"model": str(alias)}}}}})
    daemon = Daemon(config, stdout_results=False)
    daemon.prepare()
    layout = daemon.pipeline.layout
    assert len(layout.models) == 2  # the default file once, the copy once
    x, y = layout.cameras["a"].regions
    assert layout.classifier(x.model_path) is layout.classifier(y.model_path)


def test_sources_by_camera_name_feed_each_camera_its_own_frames(resnet_int8: Path) -> None:
    config = parse_config({"device_id": "fed", "mqtt": {"enabled": False},
                           "model": {"path": str(resnet_int8), "threads": 1},
                           "cameras": {"a": {"uri": "memory"}, "b": {"uri": "memory"}, "c": {"uri": "demo"}}})
    recorder = Recorder()
    daemon = Daemon(config, stdout_results=False, extra_sinks=[recorder],
                    source=MemorySource([photo_bgr("chelsea")], fps=20, source_id="mem-a"),
                    sources={"b": MemorySource([photo_bgr("coffee")], fps=20, source_id="mem-b")})
    daemon.prepare()
    runs = daemon.pipeline.layout.cameras.values()
    assert [run.camera.source.source_id for run in runs] == ["mem-a", "mem-b", "demo"]
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        wait_until(lambda: {r.camera for r in recorder.results} == {"a", "b", "c"}, 60, "all three cameras")
    finally:
        daemon.stop()
        runner.join(timeout=10)
    assert {(r.camera, r.source) for r in recorder.results} == {("a", "mem-a"), ("b", "mem-b"), ("c", "demo")}


def test_sources_for_unknown_cameras_or_twice_for_one_are_errors(resnet_int8: Path) -> None:
    config = parse_config({"mqtt": {"enabled": False}, "model": {"path": str(resnet_int8), "threads": 1},
                           "cameras": {"a": {"uri": "memory"}, "b": {"uri": "memory"}}})
    frames = [photo_bgr("chelsea")]
    with pytest.raises(ConfigError, match=r"unknown camera\(s\) z \(cameras: a, b\)"):
        Daemon(config, stdout_results=False, sources={"z": MemorySource(frames)})
    with pytest.raises(ConfigError, match="camera a given two sources"):
        Daemon(config, stdout_results=False, source=MemorySource(frames), sources={"a": MemorySource(frames)})
