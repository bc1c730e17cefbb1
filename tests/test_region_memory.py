"""A region's state survives a restart: same label, since and previous, republished at start."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgecam.bench.broker import Broker
from edgecam.bench.media import moving_frames, write_video
from edgecam.model.types import Label
from edgecam.publish.mqtt.memory import RegionMemory
from edgecam.regions.debounce import RegionState
from tests.support.daemon_process import DaemonProcess, write_config
from tests.support.models import two_label_model
from tests.support.mqtt import Collector


def test_state_payload_round_trip() -> None:
    state = RegionState("open", 1, 0.875, 1_764_000_000.123, (Label("open", 1, 0.875), Label("closed", 0, 0.125)),
                        "closed")
    payload = state.to_payload("dev", "garage", "door")
    back = RegionState.from_payload(json.loads(json.dumps(payload)))
    assert back is not None and back.to_payload("dev", "garage", "door") == payload
    assert abs(back.since_wall - 1_764_000_000.123) < 1e-3
    assert RegionState.from_payload({"label": "open"}) is None
    assert RegionState.from_payload({**payload, "since": "yesterday"}) is None


def test_memory_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "regions-dev.json"
    memory = RegionMemory(path)
    memory.remember({"camera": "garage", "region": "door", "label": "open"})
    memory.remember({"camera": "garage", "region": "door", "label": "closed"})
    memory.remember({"camera": "yard", "region": "gate", "label": "open"})
    again = RegionMemory(path).states()
    assert {key: value["label"] for key, value in again.items()} == {"garage/door": "closed", "yard/gate": "open"}
    RegionMemory(path).keep_only({"yard/gate"})
    assert list(RegionMemory(path).states()) == ["yard/gate"]
    path.write_text("[1, 2")
    assert RegionMemory(path).states() == {}  # unreadable: a warning, and regions start afresh


def test_restart_republishes_the_same_since(tmp_path: Path, broker: Broker) -> None:
    model = two_label_model(tmp_path / "door.onnx")
    clip = write_video(tmp_path / "garage.avi", moving_frames(20), fps=10)
    config = write_config(tmp_path / "config.yaml", device_id="memcam", model={"path": str(model), "threads": 1},
                          stats={"interval_s": 0.5},
                          cameras={"garage": {"uri": str(clip), "regions": {"door": {"confirm": 2}}}},
                          mqtt={"host": broker.host, "port": broker.port, "keepalive_s": 5,
                                "outbox": {"path": str(tmp_path / "state" / "outbox.sqlite3")}})
    topic = "edgecam/memcam/garage/door/state"
    live = Collector(broker, [topic, "edgecam/memcam/state"])
    try:
        daemon = DaemonProcess(["--config", str(config)], tmp_path)
        first = live.wait_for(topic, 1, timeout=60)[0].json()
        assert (first["label"], first["previous"]) == ("closed", None)
        assert daemon.terminate()[0] == 0
        saved = json.loads((tmp_path / "state" / "regions-memcam.json").read_text())
        assert saved["garage/door"]["since"] == first["since"]

        daemon = DaemonProcess(["--config", str(config)], tmp_path)
        again = live.wait_for(topic, 2, timeout=60)[1].json()
        assert (again["label"], again["since"], again["previous"]) == ("closed", first["since"], None)
        assert daemon.wait_for(lambda: any("ready: first frame" in line for line in daemon.errors), 30)
        assert len(live.messages(topic)) == 2  # the same label confirmed again: no new change
        # the retained state topic is current: republished every stats interval, not only on changes
        before = len(live.messages("edgecam/memcam/state"))
        time.sleep(2.0)
        states = [m.json() for m in live.messages("edgecam/memcam/state")[before:]]
        assert len(states) >= 3 and states[-1]["cameras"]["garage"]["state"] == "connected"
        assert daemon.terminate()[0] == 0
        assert any("kept from before the restart" in line for line in daemon.errors)
    finally:
        daemon.kill()
        live.close()
