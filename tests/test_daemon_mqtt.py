"""The whole daemon against a real Mosquitto: `edgecam run` as a subprocess, and
in-process for the broker outage (where exact counters are needed)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.bench.media import moving_frames, write_video
from edgecam.config import parse_config
from edgecam.model import cpu
from edgecam.publish.sink import Sink
from edgecam.service.daemon import Daemon
from edgecam.sources.memory import MemorySource
from tests.support.daemon_process import DaemonProcess, write_config
from tests.support.mqtt import Collector, wait_until

DEVICE = "mqttcam"


class Recorder(Sink):
    """Remembers every result the publisher hands to the sinks (next to MQTT)."""

    name = "recorder"

    def __init__(self) -> None:
        self.results: list = []

    def publish_result(self, result) -> None:
        self.results.append(result)

PREFIX = f"edgecam/{DEVICE}"
TOPICS = [f"{PREFIX}/{name}" for name in ("result", "status", "state", "stats", "snapshot", "cmd/response")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.avi", moving_frames(60), fps=30)


def start_daemon(tmp_path: Path, broker, clip: Path, model: Path, **mqtt) -> DaemonProcess:
    config = write_config(
        tmp_path / "config.yaml", device_id=DEVICE, stats={"interval_s": 1},
        source={"uri": str(clip), "loop": True}, model={"path": str(model), "threads": 1},
        mqtt={"host": broker.host, "port": broker.port, "keepalive_s": 5,
              "reconnect": {"initial_s": 0.2, "max_s": 1.0}, **mqtt})
    return DaemonProcess(["--config", str(config)], tmp_path)


def command(collector: Collector, payload: dict | bytes) -> dict:
    """Send one command and return its reply."""
    before = len(collector.messages(f"{PREFIX}/cmd/response"))
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    collector.client.publish(f"{PREFIX}/cmd", body, qos=1)
    return collector.wait_for(f"{PREFIX}/cmd/response", before + 1, timeout=10)[before].json()


def test_results_status_state_stats_and_clean_stop(broker, collector_factory, clip, resnet_int8, tmp_path,
                                                   result_validator) -> None:
    collector = collector_factory(broker, TOPICS)
    daemon = start_daemon(tmp_path, broker, clip, resnet_int8, qos=1)
    try:
        results = collector.wait_for(f"{PREFIX}/result", 30, timeout=60)
        collector.wait_for(f"{PREFIX}/stats", 1, timeout=10)
        code, elapsed = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0 and elapsed < 1.5, (code, elapsed, daemon.errors[-10:])
    payloads = [m.json() for m in results]
    for payload in payloads:
        result_validator.validate(payload)
    seqs = [p["seq"] for p in payloads]
    assert seqs == sorted(set(seqs)), "seq must increase"
    assert collector.wait_payload(f"{PREFIX}/status", b"online").payload == b"online"
    assert collector.messages(f"{PREFIX}/status")[-1].payload == b"offline"
    state = collector.messages(f"{PREFIX}/state")[-1].json()
    assert state["model"]["name"] == "resnet18_160_int8" and state["paused"] is False
    # Which INT8 kernels run here, and why: in the state and in the start-up log.
    assert state["int8"] == cpu.auto().as_dict()
    assert any(cpu.auto().describe() in line for line in daemon.errors), daemon.errors[:10]
    stats = collector.messages(f"{PREFIX}/stats")[-1].json()
    assert stats["processed"] > 0 and stats["captured"] >= stats["processed"]
    # Retained: a late subscriber still learns the device is offline, and its last state.
    late = collector_factory(broker, [f"{PREFIX}/status", f"{PREFIX}/state"])
    assert late.wait_for(f"{PREFIX}/status", 1)[0].payload == b"offline"
    assert late.wait_for(f"{PREFIX}/state", 1)[0].retain


def test_last_will_after_kill_9(broker, collector_factory, clip, resnet_int8, tmp_path) -> None:
    collector = collector_factory(broker, TOPICS)
    daemon = start_daemon(tmp_path, broker, clip, resnet_int8)
    try:
        collector.wait_payload(f"{PREFIX}/status", b"online", timeout=60)
        collector.wait_for(f"{PREFIX}/result", 3, timeout=30)
        killed = time.monotonic()
        daemon.kill()
        will = collector.wait_payload(f"{PREFIX}/status", b"offline", timeout=7.5)
    finally:
        daemon.kill()
    assert will.at - killed < 7.5  # 1.5 x keepalive (5 s)


def test_commands_change_the_running_daemon(broker, collector_factory, clip, resnet_int8, tmp_path) -> None:
    collector = collector_factory(broker, TOPICS)
    daemon = start_daemon(tmp_path, broker, clip, resnet_int8)
    result_topic = f"{PREFIX}/result"
    try:
        collector.wait_for(result_topic, 5, timeout=60)

        assert command(collector, {"cmd": "pause", "id": "p1"})["ok"] is True
        time.sleep(0.5)
        paused_count = len(collector.messages(result_topic))
        time.sleep(1.5)
        assert len(collector.messages(result_topic)) == paused_count, "results kept coming while paused"
        assert collector.messages(f"{PREFIX}/state")[-1].json()["paused"] is True

        assert command(collector, {"cmd": "resume"})["ok"] is True
        collector.wait_for(result_topic, paused_count + 5, timeout=10)

        reply = command(collector, {"cmd": "set", "max_fps": 2})
        assert reply["ok"] is True, reply
        time.sleep(0.8)
        start_count, start = len(collector.messages(result_topic)), time.monotonic()
        time.sleep(3.0)
        rate = (len(collector.messages(result_topic)) - start_count) / (time.monotonic() - start)
        assert rate <= 2.7, f"max_fps 2 but {rate:.1f} results/s"

        reply = command(collector, {"cmd": "snapshot"})
        assert reply["ok"] is True, reply
        jpeg = collector.wait_for(f"{PREFIX}/snapshot", 1)[-1].payload
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[1] >= 320

        bad_replies = [command(collector, bad) for bad in
                       (b"{not json", b"\xff\xfe", {"cmd": "explode"}, {"cmd": "set", "max_fps": "fast"},
                        {"cmd": "set", "smoothing": 0}, [1, 2], {"nocmd": 1}, b"x" * 10_000)]
        assert all(reply["ok"] is False and reply["error"] for reply in bad_replies), bad_replies
        state = command(collector, {"cmd": "status"})
        assert state["ok"] is True
        count = len(collector.messages(result_topic))
        collector.wait_for(result_topic, count + 2, timeout=10)  # still publishing
        assert daemon.proc.poll() is None
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0
    # Rejections are logged once per kind per interval (then counted): the first of each kind.
    rejected = [line.split("Rejected MQTT command ")[1].split(")")[0] for line in daemon.errors
                if "Rejected MQTT command" in line]
    assert sorted(rejected) == ["(malformed", "(refused setting"], daemon.errors


def test_broker_outage_daemon_recovers_and_counts_drops(broker, resnet_int8) -> None:
    """Stop the broker for ~5 s mid-stream: the daemon stays up, reconnects, republishes
    its status, and every seq that never arrived is accounted for by a drop counter."""
    config = parse_config({
        "device_id": DEVICE, "model": {"path": str(resnet_int8), "threads": 1}, "stats": {"interval_s": 1},
        "mqtt": {"host": broker.host, "port": broker.port, "qos": 1, "keepalive_s": 5, "queue_size": 20,
                 "reconnect": {"initial_s": 1.5, "max_s": 1.5}},
    })
    recorder = Recorder()
    daemon = Daemon(config, stdout_results=False, source=MemorySource(moving_frames(30), fps=20),
                    extra_sinks=[recorder])
    runner = threading.Thread(target=daemon.run)
    collector = first = Collector(broker, TOPICS)
    runner.start()
    try:
        collector.wait_for(f"{PREFIX}/result", 10, timeout=60)
        broker.stop()
        wait_until(lambda: not daemon.mqtt_sink.connected, timeout=10, what="disconnect noticed")
        time.sleep(5.0)
        assert runner.is_alive()
        collector.close()
        broker.start()
        collector = Collector(broker, TOPICS)  # subscribed before the daemon's reconnect delay ends
        collector.wait_payload(f"{PREFIX}/status", b"online", timeout=15)
        before = len(collector.messages(f"{PREFIX}/result"))
        collector.wait_for(f"{PREFIX}/result", before + 20, timeout=20)
    finally:
        daemon.stop()
        runner.join(timeout=5)
    collector.wait_payload(f"{PREFIX}/status", b"offline", timeout=5)
    collector.close()
    received = {m.json()["seq"] for c in (first, collector) for m in c.messages(f"{PREFIX}/result")}
    handed = {r.seq for r in recorder.results}
    mqtt = daemon.mqtt_sink.counters()
    counters = daemon.status.counters()
    assert mqtt["dropped"] > 0, "the outage should have overflowed the 20-message queue"
    # Every result handed to the sinks but never received was dropped by the MQTT queue
    # (oldest first) or still queued at shutdown: nothing vanished silently.
    missing = handed - received
    assert len(missing) == mqtt["dropped"] + mqtt["queued"], (len(missing), mqtt)
    # And every frame captured but never handed to the sinks is counted too.
    never_handed = counters["captured"] - len(handed)
    assert never_handed == counters["dropped"] + counters["skipped"] + counters["pending"] + \
        daemon.publisher.dropped + daemon.publisher.suppressed
