"""Commands run on their own worker: a flood of slow commands (captures that cost the daemon
0.45 s each, from anyone on an anonymous broker) never delays a state change, the queue is
bounded (a full one answers "busy" at once), and every rejected command is counted by kind
and logged at most once per kind per interval."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pytest

from edgecam.dataset.collector import CaptureRateLimited
from edgecam.dataset.store import DatasetError
from edgecam.publish.mqtt import rejects
from tests.support.fake_control import FakeControl
from tests.support.mqtt import mqtt_config, wait_until

CAPTURE_S = 0.45  # what one capture cost the MQTT worker in the report


class SlowCaptures(FakeControl):
    """FAKE DaemonControl whose captures take as long as the daemon's did (0.45 s each), with
    one camera "garage" and its region "door"."""

    def __init__(self) -> None:
        super().__init__()
        self.captures = 0
        self.capture_error: Exception | None = None
        self._lock = threading.Lock()

    def camera_names(self) -> list[str]:
        return ["garage"]

    def state(self) -> dict[str, Any]:
        state = super().state()
        state["cameras"] = {"garage": {"paused": False, "regions": {"door": {"state": "closed"}}}}
        return state

    def capture_sample(self, camera: str, region: str, label: str | None = None) -> dict[str, Any]:
        if self.capture_error is not None:
            raise self.capture_error
        time.sleep(CAPTURE_S)
        with self._lock:
            self.captures += 1
            return {"sample": f"{label or 'inbox'}/s{self.captures}.jpg", "bytes": 1000}


def region_state(label: str, device: str) -> dict[str, Any]:
    return {"device": device, "camera": "garage", "region": "door", "label": label, "previous": "closed",
            "score": 0.93, "since": "2026-12-01T10:00:00.000Z"}


@pytest.fixture
def device(broker, collector_factory, sink_factory):
    """``device(queue_size)`` -> (control, config, collector, sink), connected."""
    def make(queue_size: int):
        control = SlowCaptures()
        config = mqtt_config(broker, qos=1, commands={"queue_size": queue_size})
        prefix = config.topic_prefix
        collector = collector_factory(broker, [f"{prefix}/cmd/response", f"{prefix}/garage/door/state",
                                               f"{prefix}/status"])
        sink = sink_factory(config, control)
        collector.wait_payload(f"{prefix}/status", b"online")
        return control, config, collector, sink
    return make


def test_a_capture_flood_does_not_delay_a_state_change(device) -> None:
    control, config, collector, sink = device(8)
    prefix = config.topic_prefix
    sent = 100
    for i in range(sent):  # an anonymous LAN client: 100 captures in a burst
        body = {"cmd": "capture", "camera": "garage", "region": "door", "label": "open", "id": i}
        collector.client.publish(f"{prefix}/cmd", json.dumps(body).encode(), qos=1)
    collector.wait_for(f"{prefix}/cmd/response", 20, timeout=10)  # the flood is being answered
    opened = time.monotonic()
    sink.publish_region_state(region_state("open", config.device_id))  # "door opened"
    arrived = collector.wait_for(f"{prefix}/garage/door/state", 1, timeout=60)[0]
    assert arrived.at - opened < 2.0, f"the state change took {arrived.at - opened:.1f} s"
    assert arrived.json()["label"] == "open"
    # Every command got exactly one reply: the queued ones ran, the others were "busy" at once.
    replies = [m.json() for m in collector.wait_for(f"{prefix}/cmd/response", sent, timeout=30)]
    time.sleep(CAPTURE_S * 2)
    replies = [m.json() for m in collector.messages(f"{prefix}/cmd/response")]
    assert sorted(r["id"] for r in replies) == list(range(sent))
    ran = [r for r in replies if r["ok"]]
    busy = [r for r in replies if not r["ok"]]
    assert len(ran) == control.captures and 8 <= len(ran) <= 20
    assert all(r["error"].startswith("busy: ") and r["cmd"] == "capture" for r in busy)
    assert sink.counters()["commands"]["rejected"] == {"busy": len(busy)}


def test_rejections_are_logged_once_per_kind_with_a_count(device, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam")
    control, config, collector, sink = device(64)
    prefix = config.topic_prefix
    sink._commands.rejects.interval_s = 3.0  # (10 s in production)

    def send_all(payload: dict | bytes, times: int) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        for _ in range(times):
            collector.client.publish(f"{prefix}/cmd", body, qos=1)

    control.snapshot = None
    kinds = {
        "malformed": b"{not json",
        "target": {"cmd": "pause", "camera": "attic"},
        "setting": {"cmd": "set", "smoothing": 0},
        "failed": {"cmd": "snapshot"},
    }
    sent = 0
    for payload in kinds.values():
        send_all(payload, 20)
        sent += 20
        collector.wait_for(f"{prefix}/cmd/response", sent, timeout=20)
    control.capture_error = CaptureRateLimited("captures of garage/door are limited to one per 1 s")
    send_all({"cmd": "capture", "camera": "garage", "region": "door"}, 20)
    sent += 20
    collector.wait_for(f"{prefix}/cmd/response", sent, timeout=20)
    control.capture_error = DatasetError("cannot write samples to /data: No space left on device")
    send_all({"cmd": "capture", "camera": "garage", "region": "door"}, 20)
    sent += 20
    collector.wait_for(f"{prefix}/cmd/response", sent, timeout=20)

    lines = [r.getMessage() for r in caplog.records if "Rejected MQTT command" in r.getMessage()]
    assert sorted(line.split(")")[0].split("(")[1] for line in lines) == sorted(
        rejects.KINDS[k] for k in ("malformed", "target", "setting", "failed", "rate")), lines
    assert any("no camera named 'attic' (cameras: garage)" in line for line in lines)
    assert sink.counters()["commands"]["rejected"] == {"malformed": 20, "target": 20, "setting": 20,
                                                       "failed": 40, "rate": 20}
    assert not any(call[0] in ("pause", "apply_settings") for call in control.calls)  # (never reached the daemon)
    assert not control.paused
    # After the interval, the idle worker tells how many more of each kind there were.
    wait_until(lambda: sum("more in the last 3 s" in r.getMessage() for r in caplog.records) == 5, 10,
               "one count line per kind")
    counts = sorted(r.getMessage() for r in caplog.records if "more in the last 3 s" in r.getMessage())
    assert "Rejected MQTT command (failed): 39 more in the last 3 s" in counts
    assert "Rejected MQTT command (malformed): 19 more in the last 3 s" in counts
