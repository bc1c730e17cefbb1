"""edgecam against a real Home Assistant 2025.4.4, a real Mosquitto and the daemon as a process.

Two cameras (video files) and three regions; HA discovers them through MQTT, and the test
reads what HA shows through its REST and websocket APIs: the devices and their entities,
the enum options, a lost camera (its file removed), the pause switch and the snapshot
button pressed in HA, kill -9 and a restart, a region removed by a live reload.
Run with ``python -m pytest -m homeassistant tests/test_homeassistant_edgecam.py``.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from edgecam.bench.broker import Broker
from edgecam.bench.media import moving_frames, write_video
from tests.support.daemon_process import DaemonProcess, write_config
from tests.support.homeassistant import HomeAssistant, free_port
from tests.support.models import two_label_model
from tests.support.mqtt import Collector

pytestmark = pytest.mark.homeassistant

DEVICE = "hacam"
PREFIX = f"edgecam/{DEVICE}"
LABELS = ("closed", "open")  # two_label_model's


def edgecam_config(tmp_path: Path, broker: Broker, model: Path, clips: dict[str, Path], web_port: int,
                   regions: dict[str, Any] | None = None) -> Path:
    door_regions = regions if regions is not None else {
        "door": {"box": [0, 0, 0.5, 1], "confirm": 1, "binary": {"on": ["open"], "device_class": "door"}},
        "car": {"box": [0.5, 0, 1, 1], "confirm": 1}}
    backoff = {"initial_s": 0.2, "max_s": 0.5}
    return write_config(
        tmp_path / "config.yaml", device_id=DEVICE, stats={"interval_s": 1},
        model={"path": str(model), "threads": 1},
        cameras={"garage": {"uri": str(clips["garage"]), "suggested_area": "Garage", "backoff": backoff,
                            "read_timeout_s": 1, "regions": door_regions},
                 "yard": {"uri": str(clips["yard"]), "backoff": backoff, "regions": {"gate": {"confirm": 1}}}},
        preview={"http": {"enabled": True, "port": web_port}},
        mqtt={"host": broker.host, "port": broker.port, "keepalive_s": 5,
              "reconnect": {"initial_s": 0.2, "max_s": 1.0}, "discovery": {"enabled": True}})


def uid(key: str) -> str:
    return f"edgecam_{DEVICE}_{key}"


GARAGE = {"connected": "binary_sensor", "running": "switch", "snapshot": "button", "image": "image",
          "inference_fps": "sensor", "capture_fps": "sensor", "dropped": "sensor",
          "door_state": "sensor", "door_binary": "binary_sensor", "car_state": "sensor",
          "door_latency": "sensor", "car_latency": "sensor"}


def wait_state(ha: HomeAssistant, entity_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
    def matches() -> dict[str, Any] | None:
        found = ha.state(entity_id)
        return found if found and found["state"] == state else None
    try:
        return ha.wait_for(matches, timeout, f"{entity_id} == {state!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it is {ha.state(entity_id)}") from None


def garage_entities(ha: HomeAssistant) -> dict[str, str]:
    def found() -> dict[str, str] | None:
        by_uid = {e["unique_id"]: e["entity_id"] for e in ha.entity_registry() if e["platform"] == "mqtt"}
        ids = {key: by_uid.get(uid(f"garage_{key}"), "") for key in GARAGE}
        return ids if all(ids.values()) else None
    return ha.wait_for(found, 90, "the garage camera's entities")


def ha_complaints(ha: HomeAssistant) -> list[str]:
    """Warnings and errors of HA's MQTT integration and templates: what edgecam could cause."""
    return [line for line in ha.log_text().splitlines() if (" WARNING " in line or " ERROR " in line)
            and ("[homeassistant.components.mqtt" in line or "[homeassistant.helpers.template]" in line)]


def print_entities(ha: HomeAssistant) -> None:
    """The entities HA shows (``pytest -s`` prints the table)."""
    keys = ("device_class", "options", "entity_category", "unit_of_measurement", "since", "previous")
    mqtt = set(ha.template_json("integration_entities('mqtt')"))
    print("\n| entity | state | attributes |\n|---|---|---|")
    for entry in sorted((s for s in ha.states() if s["entity_id"] in mqtt), key=lambda s: s["entity_id"]):
        attrs = {k: entry["attributes"][k] for k in keys if entry["attributes"].get(k) is not None}
        print(f"| {entry['entity_id']} | {entry['state']} | {attrs} |")


def test_edgecam_in_home_assistant(homeassistant: HomeAssistant, broker: Broker, tmp_path: Path) -> None:
    ha = homeassistant
    model = two_label_model(tmp_path / "door.onnx")
    clips = {"garage": write_video(tmp_path / "garage.avi", moving_frames(20), fps=10),
             "yard": write_video(tmp_path / "yard.avi", moving_frames(20), fps=10)}
    web_port = free_port()
    config = edgecam_config(tmp_path, broker, model, clips, web_port)
    state_topic = Collector(broker, [f"{PREFIX}/state"])
    daemon = DaemonProcess(["--config", str(config)], tmp_path)
    try:
        ids = garage_entities(ha)
        # -- devices: the hub, a camera under it, in its area, with the web app's link
        assert {key: eid.split(".")[0] for key, eid in ids.items()} == GARAGE
        hub, garage = ha.device_by_identifier(f"edgecam_{DEVICE}"), ha.device_by_identifier(f"edgecam_{DEVICE}_garage")
        assert hub is not None and garage is not None
        assert (garage["name"], garage["via_device_id"], garage["model"]) == ("Garage", hub["id"], "door")
        assert garage["configuration_url"] == f"http://127.0.0.1:{web_port}/"
        assert ha.template(f"{{{{ area_name('{ids['door_state']}') }}}}") == "Garage"
        enabled = [eid for key, eid in ids.items() if not key.endswith("_latency")]  # (those are off by default)
        assert sorted(ha.template_json(f"device_entities('{garage['id']}')")) == sorted(enabled)
        yard = ha.device_by_identifier(f"edgecam_{DEVICE}_yard")
        assert yard is not None and yard["via_device_id"] == hub["id"] and yard["area_id"] is None
        registry = {e["entity_id"]: e for e in ha.entity_registry()}
        assert {k for k, eid in ids.items() if registry[eid]["entity_category"] == "diagnostic"} == {
            "connected", "inference_fps", "capture_fps", "dropped", "door_latency", "car_latency"}
        assert {k for k, eid in ids.items() if registry[eid]["disabled_by"]} == {"door_latency", "car_latency"}

        # -- the region sensors: enum with the model's labels, Top-k and since as attributes
        door = wait_state(ha, ids["door_state"], "closed")["attributes"]
        assert (door["device_class"], door["options"], door["friendly_name"]) == ("enum", list(LABELS), "Garage Door")
        assert door["previous"] is None and door["top"][0]["label"] == "closed" and door["since"]
        assert wait_state(ha, ids["door_binary"], "off")["attributes"]["device_class"] == "door"
        assert wait_state(ha, ids["connected"], "on")["attributes"]["device_class"] == "connectivity"
        wait_state(ha, ids["running"], "on")

        # -- the pause switch pressed in HA pauses the camera in edgecam
        ha.call_service("switch", "turn_off", {"entity_id": ids["running"]})
        wait_state(ha, ids["running"], "off")
        wait_state(ha, ids["door_state"], "unavailable")  # paused: not its last label
        assert state_topic.wait_for(f"{PREFIX}/state")[-1].json()["cameras"]["garage"]["paused"] is True
        assert wait_state(ha, ids["connected"], "on")  # the source still delivers
        ha.call_service("switch", "turn_on", {"entity_id": ids["running"]})
        wait_state(ha, ids["door_state"], "closed")
        assert state_topic.messages(f"{PREFIX}/state")[-1].json()["cameras"]["garage"]["paused"] is False

        # -- the snapshot button: the picture shows in the image entity
        ha.call_service("button", "press", {"entity_id": ids["snapshot"]})
        picture = ha.wait_for(lambda: (r := ha.request("GET", f"/api/image_proxy/{ids['image']}"))[0] == 200 and r,
                              30, "the snapshot in the image entity")
        assert picture[2] == "image/jpeg" and picture[1][:2] == b"\xff\xd8"

        # -- the camera's source disappears: connectivity off, its regions unavailable, the other camera fine
        yard_gate = ha.entity_id_for(uid("yard_gate_state")) or ""
        wait_state(ha, yard_gate, "closed")
        hidden = tmp_path / "garage.avi.away"
        clips["garage"].rename(hidden)
        wait_state(ha, ids["connected"], "off", 30)
        wait_state(ha, ids["door_state"], "unavailable")
        wait_state(ha, ids["door_binary"], "unavailable")
        assert ha.state(yard_gate)["state"] == "closed"
        shutil.move(hidden, clips["garage"])
        wait_state(ha, ids["connected"], "on", 30)
        wait_state(ha, ids["door_state"], "closed")

        print_entities(ha)
        # -- kill -9: the Last Will makes everything unavailable; a restart brings it back, same since
        since = wait_state(ha, ids["door_state"], "closed")["attributes"]["since"]
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)
        wait_state(ha, ids["connected"], "unavailable", 30)
        wait_state(ha, ids["door_state"], "unavailable")
        daemon = DaemonProcess(["--config", str(config)], tmp_path)
        assert wait_state(ha, ids["door_state"], "closed")["attributes"]["since"] == since
        wait_state(ha, ids["connected"], "on")

        # -- a region removed by a live reload loses its entity
        edgecam_config(tmp_path, broker, model, clips, web_port, regions={
            "door": {"box": [0, 0, 0.5, 1], "confirm": 1, "binary": {"on": ["open"], "device_class": "door"}}})
        daemon.proc.send_signal(signal.SIGHUP)
        ha.wait_for(lambda: ha.entity_id_for(uid("garage_car_state")) is None, 60, "the car region's entity to go")
        assert ha.state(ids["car_state"]) is None
        assert wait_state(ha, ids["door_state"], "closed")
        assert ha_complaints(ha) == []
    finally:
        daemon.kill()
        state_topic.close()
        if daemon.errors:
            print("\n".join(daemon.errors[-40:]))


def test_upgrade_from_one_device_moves_the_region_sensors(homeassistant: HomeAssistant, broker: Broker,
                                                          tmp_path: Path) -> None:
    """Up to 0.1 everything was one device; the region sensors move to their camera's device."""
    ha = homeassistant
    old = Collector(broker, [f"{PREFIX}/status"])
    old.client.publish(f"homeassistant/device/{DEVICE}/config", json.dumps({
        "dev": {"ids": [f"edgecam_{DEVICE}"], "name": f"edgecam {DEVICE}", "mf": "edgecam", "mdl": "door"},
        "o": {"name": "edgecam", "sw": "0.1.0"}, "availability_topic": f"{PREFIX}/status",
        "cmps": {uid("garage_door_state"): {"p": "sensor", "name": "garage door", "unique_id": uid("garage_door_state"),
                                            "state_topic": f"{PREFIX}/garage/door/state",
                                            "value_template": "{{ value_json.label }}"}}}), qos=1, retain=True)
    ha.wait_for(lambda: ha.entity_id_for(uid("garage_door_state")), 60, "the 0.1 region sensor")
    hub = ha.device_by_identifier(f"edgecam_{DEVICE}")
    assert hub is not None
    model = two_label_model(tmp_path / "door.onnx")
    clips = {"garage": write_video(tmp_path / "garage.avi", moving_frames(20), fps=10),
             "yard": write_video(tmp_path / "yard.avi", moving_frames(20), fps=10)}
    daemon = DaemonProcess(["--config", str(edgecam_config(tmp_path, broker, model, clips, free_port()))], tmp_path)
    try:
        ids = garage_entities(ha)
        garage = ha.device_by_identifier(f"edgecam_{DEVICE}_garage")
        assert garage is not None
        registry = {e["unique_id"]: e for e in ha.entity_registry() if e["platform"] == "mqtt"}
        assert registry[uid("garage_door_state")]["device_id"] == garage["id"]
        assert wait_state(ha, ids["door_state"], "closed")["attributes"]["options"] == list(LABELS)
        assert "already exists" not in ha.log_text() and ha_complaints(ha) == []
    finally:
        daemon.kill()
        old.close()
