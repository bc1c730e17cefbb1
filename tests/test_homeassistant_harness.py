"""The Home Assistant harness against real components: a real HA, a real Mosquitto, plain paho.

No edgecam code here: a hand-written device discovery (hub + camera, the shape the
issue asks edgecam to publish) proves that the harness installs, starts, onboards
and configures HA, and that its helpers read what HA really shows. Run with
``.venv/bin/python -m pytest -m homeassistant tests/test_homeassistant_harness.py``.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from edgecam.bench.broker import Broker
from tests.support.homeassistant import HomeAssistant

pytestmark = pytest.mark.homeassistant

LABELS = ["closed", "open", "unknown"]
PLATFORM_OF = {"label": "sensor", "online": "binary_sensor", "running": "switch", "snapshot": "button",
               "image": "image"}


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(out, "JPEG", quality=90)
    return out.getvalue()


@dataclass
class SmokeDevice:
    """A hub device and a camera device under it, announced the way the issue asks edgecam to."""

    broker: Broker
    hub: str
    cam: str
    client: mqtt.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"smoke-{self.cam}")
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def topic(self, leaf: str) -> str:
        return f"smoke/{self.cam}/{leaf}"

    def uid(self, key: str) -> str:
        return f"{self.cam}_{key}"

    def publish(self, topic: str, payload: Any, retain: bool = True) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload) if isinstance(payload, dict) else payload
        self.client.publish(topic, data, qos=1, retain=retain).wait_for_publish(10)

    def announce_hub(self) -> None:
        self.publish(f"homeassistant/device/{self.hub}/config", {
            "dev": {"ids": [self.hub], "name": "Smoke Hub", "mf": "edgecam tests", "mdl": "hub", "sw": "0.1"},
            "o": {"name": "edgecam harness smoke test", "sw": "0.1"},
            "cmps": {"cameras": {"p": "sensor", "unique_id": f"{self.hub}_cameras", "name": "Cameras",
                                 "state_topic": f"smoke/{self.hub}/cameras"}}})
        self.publish(f"smoke/{self.hub}/cameras", "1")

    def announce_camera(self) -> None:
        self.publish(f"homeassistant/device/{self.cam}/config", {
            "dev": {"ids": [self.cam], "name": "Smoke Camera", "mf": "edgecam tests", "mdl": "camera",
                    "sw": "0.1", "via_device": self.hub, "suggested_area": "Garage",
                    "configuration_url": "http://127.0.0.1:8080/"},
            "o": {"name": "edgecam harness smoke test", "sw": "0.1"},
            "availability_topic": self.topic("availability"),
            "cmps": {
                "label": {"p": "sensor", "unique_id": self.uid("label"), "name": "Label", "device_class": "enum",
                          "options": LABELS, "state_topic": self.topic("label"),
                          "value_template": "{{ value_json.label }}", "json_attributes_topic": self.topic("label")},
                "online": {"p": "binary_sensor", "unique_id": self.uid("online"), "name": "Frames",
                           "device_class": "connectivity", "entity_category": "diagnostic",
                           "state_topic": self.topic("connected")},
                "running": {"p": "switch", "unique_id": self.uid("running"), "name": "Running",
                            "state_topic": self.topic("running"), "command_topic": self.topic("running/set")},
                "snapshot": {"p": "button", "unique_id": self.uid("snapshot"), "name": "Snapshot",
                             "command_topic": self.topic("snapshot/set"), "payload_press": "PRESS"},
                "image": {"p": "image", "unique_id": self.uid("image"), "name": "Last Snapshot",
                          "image_topic": self.topic("snapshot"), "content_type": "image/jpeg"},
            }})

    def publish_states(self, picture: bytes) -> None:
        self.publish(self.topic("label"), {"label": "open", "score": 0.93, "top": [["open", 0.93], ["closed", 0.05]]})
        self.publish(self.topic("connected"), "ON")
        self.publish(self.topic("running"), "ON")
        self.publish(self.topic("snapshot"), picture)
        self.publish(self.topic("availability"), "online")


def entity_ids(ha: HomeAssistant, dev: SmokeDevice) -> dict[str, str]:
    """component key -> entity_id, once HA has registered all five."""
    def found() -> dict[str, str] | None:
        by_uid = {e["unique_id"]: e["entity_id"] for e in ha.entity_registry() if e["platform"] == "mqtt"}
        ids = {key: by_uid.get(dev.uid(key), "") for key in PLATFORM_OF}
        return ids if all(ids.values()) else None
    return ha.wait_for(found, 60, "the camera's five entities in the registry")


def wait_state(ha: HomeAssistant, entity_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
    def matches() -> dict[str, Any] | None:
        found = ha.state(entity_id)
        return found if found and found["state"] == state else None
    try:
        return ha.wait_for(matches, timeout, f"{entity_id} == {state!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it is {ha.state(entity_id)}") from None


@pytest.fixture
def smoke(homeassistant: HomeAssistant,
          broker: Broker) -> Iterator[tuple[HomeAssistant, SmokeDevice, dict[str, str], bytes]]:
    dev = SmokeDevice(broker, hub=f"smokehub{uuid.uuid4().hex[:6]}", cam=f"smokecam{uuid.uuid4().hex[:6]}")
    try:
        yield homeassistant, dev, *_announce(homeassistant, dev)
    finally:
        dev.close()


def _announce(homeassistant: HomeAssistant, dev: SmokeDevice) -> tuple[dict[str, str], bytes]:
    picture = jpeg((200, 30, 30))
    dev.announce_hub()
    homeassistant.wait_for(lambda: homeassistant.device_by_identifier(dev.hub), 60, "the hub device")
    dev.publish_states(picture)
    dev.announce_camera()
    ids = entity_ids(homeassistant, dev)
    wait_state(homeassistant, ids["label"], "open")
    return ids, picture


def test_entities_show_states_attributes_device_and_registry_details(smoke: Any) -> None:
    ha, dev, ids, picture = smoke
    assert {key: eid.split(".")[0] for key, eid in ids.items()} == PLATFORM_OF

    label = wait_state(ha, ids["label"], "open")["attributes"]
    assert (label["device_class"], label["options"], label["score"]) == ("enum", LABELS, 0.93)
    assert label["top"] == [["open", 0.93], ["closed", 0.05]]
    online = wait_state(ha, ids["online"], "on")["attributes"]
    assert online["device_class"] == "connectivity"
    wait_state(ha, ids["running"], "on")
    assert wait_state(ha, ids["snapshot"], "unknown")["attributes"]["friendly_name"] == "Smoke Camera Snapshot"
    image = ha.wait_for(lambda: (s := ha.state(ids["image"])) and s["state"] not in ("unknown", "unavailable") and s,
                        30, "the image's first picture")
    assert image["attributes"]["entity_picture"].startswith(f"/api/image_proxy/{ids['image']}?token=")
    status, body, ctype = ha.request("GET", f"/api/image_proxy/{ids['image']}")
    assert (status, ctype, body) == (200, "image/jpeg", picture)

    device_id = ha.template(f"{{{{ device_id('{ids['label']}') }}}}")
    assert ha.template(f"{{{{ device_attr('{device_id}', 'name') }}}}") == "Smoke Camera"
    assert ha.template(f"{{{{ area_name('{ids['label']}') }}}}") == "Garage"
    assert sorted(ha.template_json(f"device_entities('{device_id}')")) == sorted(ids.values())
    assert set(ids.values()) <= set(ha.template_json("integration_entities('mqtt')"))

    hub, cam = ha.device_by_identifier(dev.hub), ha.device_by_identifier(dev.cam)
    assert hub is not None and cam is not None and cam["id"] == device_id
    assert (cam["via_device_id"], cam["manufacturer"], cam["model"], cam["sw_version"]) == (hub["id"], "edgecam tests",
                                                                                          "camera", "0.1")
    assert cam["configuration_url"] == "http://127.0.0.1:8080/"
    registry = {e["entity_id"]: e for e in ha.entity_registry()}
    assert registry[ids["online"]]["entity_category"] == "diagnostic"
    assert [registry[ids[k]]["entity_category"] for k in ("label", "running", "snapshot", "image")] == [None] * 4
    assert all(registry[eid]["disabled_by"] is None for eid in ids.values())


def test_availability_offline_makes_every_entity_unavailable_and_online_restores(smoke: Any) -> None:
    ha, dev, ids, _ = smoke
    dev.publish(dev.topic("availability"), "offline")
    for eid in ids.values():
        wait_state(ha, eid, "unavailable")
    dev.publish(dev.topic("availability"), "online")
    assert [wait_state(ha, ids[k], s)["state"] for k, s in (("label", "open"), ("online", "on"),
                                                              ("running", "on"))] == ["open", "on", "on"]


def test_switch_and_button_pressed_in_home_assistant_publish_commands(smoke: Any, collector_factory: Any) -> None:
    ha, dev, ids, _ = smoke
    commands = collector_factory(dev.broker, [dev.topic("running/set"), dev.topic("snapshot/set")])
    ha.call_service("switch", "turn_off", {"entity_id": ids["running"]})
    assert commands.wait_for(dev.topic("running/set"))[0].payload == b"OFF"
    assert ha.state(ids["running"])["state"] == "on"  # not optimistic: the device's state topic decides
    dev.publish(dev.topic("running"), "OFF")
    wait_state(ha, ids["running"], "off")
    ha.call_service("button", "press", {"entity_id": ids["snapshot"]})
    assert [m.payload for m in commands.wait_for(dev.topic("snapshot/set"))] == [b"PRESS"]
    assert [m.payload for m in commands.messages(dev.topic("running/set"))] == [b"OFF"]


def test_restart_rereads_retained_discovery_and_empty_discovery_removes(smoke: Any) -> None:
    ha, dev, ids, picture = smoke
    dev.publish(dev.topic("label"), {"label": "closed", "score": 0.81, "top": [["closed", 0.81]]})
    wait_state(ha, ids["label"], "closed")
    ha.restart()
    assert wait_state(ha, ids["label"], "closed", 60)["attributes"]["score"] == 0.81
    assert wait_state(ha, ids["online"], "on")["attributes"]["device_class"] == "connectivity"
    proxied = ha.wait_for(lambda: (r := ha.request("GET", f"/api/image_proxy/{ids['image']}"))[0] == 200 and r,
                          30, "the retained picture after the restart")
    assert proxied[1] == picture

    dev.publish(f"homeassistant/device/{dev.cam}/config", b"")
    ha.wait_for(lambda: all(ha.state(eid) is None for eid in ids.values()), 30, "the camera's entities to go")
    registry = {e["entity_id"] for e in ha.entity_registry()}
    assert registry.isdisjoint(ids.values())
    assert ha.device_by_identifier(dev.cam) is None
    assert ha.device_by_identifier(dev.hub) is not None  # the hub is untouched
    assert wait_state(ha, ha.entity_id_for(f"{dev.hub}_cameras") or "", "1")["state"] == "1"
