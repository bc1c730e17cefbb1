"""Home Assistant device discovery on a real broker."""

from __future__ import annotations

import re
import time

from edgecam import __version__
from edgecam.config import parse_config
from edgecam.model.types import Label
from edgecam.publish.mqtt.discovery import discovery_payload
from edgecam.regions.debounce import RegionState
from edgecam.service.stats import LatencyWindow, StatsCollector
from tests.support.mqtt import make_result, mqtt_config, wait_until


def _resolve(path: str, obj):
    """Follow a value_json path such as ``top[0].label`` through a payload."""
    for part in re.findall(r"[A-Za-z_]+|\[\d+\]", path):
        obj = obj[int(part[1:-1])] if part.startswith("[") else obj[part]
    return obj


def test_discovery_payload_describes_the_device_and_its_sensors(broker):
    config = mqtt_config(broker, discovery={"enabled": True})
    doc = discovery_payload(config)
    prefix = config.topic_prefix
    assert doc["availability_topic"] == f"{prefix}/status"
    assert doc["dev"]["ids"] == [f"edgecam_{config.device_id}"] and doc["dev"]["mf"] == "edgecam"
    assert doc["dev"]["sw"] == __version__ and doc["dev"]["mdl"] == "resnet18_160_int8"
    assert doc["o"]["name"] == "edgecam"
    components = doc["cmps"]
    assert set(components) == {f"edgecam_{config.device_id}_{k}" for k in (
        "top1_label", "top1_score", "inference_ms", "fps", "capture_fps", "default_full_state")}
    result = make_result(3, "tabby", 0.75).to_payload()
    state = RegionState("tabby", 281, 0.75, 1.7e9, (Label("tabby", 281, 0.75),), "unknown").to_payload(
        config.device_id, "default", "full")
    # the daemon's real stats snapshot, so a renamed key breaks this test, not Home Assistant
    stats = StatsCollector(lambda: {"captured": 30, "processed": 10}, LatencyWindow(), LatencyWindow()).snapshot()
    for object_id, comp in components.items():
        assert comp["p"] == "sensor" and comp["unique_id"] == object_id
        assert comp["state_topic"] in (f"{prefix}/result", f"{prefix}/stats", f"{prefix}/default/full/state")
        # every template path exists in the payload of its state topic
        path = re.fullmatch(r"\{\{ value_json\.([\w.\[\]]+) \}\}", comp["value_template"]).group(1)
        source = {"result": result, "stats": stats, "state": state}[comp["state_topic"].rsplit("/", 1)[1]]
        assert _resolve(path, source) is not None
        for attribute in re.findall(r"value_json\.(\w+)", comp.get("json_attributes_template", "")):
            assert attribute in state


def test_discovery_has_one_sensor_per_region(broker):
    config = mqtt_config(broker, discovery={"enabled": True})
    config = config.model_copy(update={"cameras": parse_config({"cameras": {
        "garage": {"uri": "0", "regions": {"door": {"box": [0, 0, 0.5, 1]}, "car": {}}},
        "feeder": {"uri": "1"}}}).cameras})
    components = discovery_payload(config)["cmps"]
    prefix = config.topic_prefix
    regions = {key: comp for key, comp in components.items() if key.endswith("_state")}
    assert {comp["state_topic"] for comp in regions.values()} == {
        f"{prefix}/garage/door/state", f"{prefix}/garage/car/state", f"{prefix}/feeder/full/state"}
    assert all(comp["json_attributes_topic"] == comp["state_topic"] and comp["value_template"] ==
               "{{ value_json.label }}" for comp in regions.values())
    assert {comp["name"] for comp in regions.values()} == {"garage door", "garage car", "feeder full"}
    assert not any(comp["state_topic"].endswith("/result") for comp in components.values())


def test_discovery_is_off_by_default(broker, collector_factory, sink_factory):
    config = mqtt_config(broker)
    collector = collector_factory(broker, ["homeassistant/#", f"{config.topic_prefix}/status"])
    sink_factory(config)
    collector.wait_payload(f"{config.topic_prefix}/status", b"online")
    time.sleep(0.3)
    assert collector.messages(f"homeassistant/device/{config.device_id}/config") == []


def test_discovery_retained_on_connect_and_resent_when_home_assistant_restarts(broker, collector_factory,
                                                                               sink_factory):
    config = mqtt_config(broker, discovery={"enabled": True})
    topic = f"homeassistant/device/{config.device_id}/config"
    live = collector_factory(broker, [topic, f"{config.topic_prefix}/status"])
    sink = sink_factory(config, discovery_delay_s=(0.05, 0.2))
    first = live.wait_for(topic, 1)[0]
    assert first.json() == discovery_payload(config)
    late = collector_factory(broker, [topic])
    retained = late.wait_for(topic)[0]
    assert retained.retain and retained.json()["availability_topic"] == f"{config.topic_prefix}/status"

    live.client.publish("homeassistant/status", b"offline", qos=1)
    time.sleep(0.5)
    assert len(live.messages(topic)) == 1  # only "online" triggers a re-send
    sent = time.monotonic()
    live.client.publish("homeassistant/status", b"online", qos=1)
    again = live.wait_for(topic, 2, timeout=5)[1]
    assert again.json() == first.json() and 0.04 <= again.at - sent < 2.0
    wait_until(lambda: sink.connected, what="still connected")
