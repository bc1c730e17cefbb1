"""Home Assistant device discovery on a real broker: a hub device, one device per camera."""

from __future__ import annotations

import re
import time

from edgecam import __version__
from edgecam.config import parse_config
from edgecam.model.types import Label
from edgecam.publish.mqtt.discovery import Description, discovery_payload, documents
from edgecam.regions.debounce import RegionState
from edgecam.regions.region import Region, resolve
from edgecam.service.stats import LatencyWindow, StatsCollector
from edgecam.service.status import _region_counters
from tests.support.mqtt import make_result, mqtt_config, wait_until

LABELS = ["closed", "open", "unknown"]


def _resolve(path: str, obj):
    """Follow a value_json path such as ``top[0].label`` or ``cameras['garage'].dropped``."""
    for part in re.findall(r"[A-Za-z_]\w*|\[\d+\]|\['[\w/-]+'\]", path):
        obj = obj[int(part[1:-1])] if part[1:-1].isdigit() and part[0] == "[" else obj[part.strip("[]'")]
    return obj


def two_cameras(broker, **mqtt):
    config = mqtt_config(broker, discovery={"enabled": True}, **mqtt)
    cameras = parse_config({"cameras": {
        "garage": {"uri": "0", "suggested_area": "Garage", "regions": {
            "door": {"box": [0, 0, 0.5, 1], "binary": {True: ["open"], "device_class": "door"}}, "car": {}}},
        "front_yard": {"uri": "1"}}}).cameras
    return config.model_copy(update={"cameras": cameras})


def test_hub_and_one_device_per_camera(broker):
    config = two_cameras(broker)
    config = config.model_copy(update={"preview": config.preview.model_copy(update={
        "http": config.preview.http.model_copy(update={"enabled": True, "bind": "127.0.0.1", "port": 8099})})})
    docs = documents(Description(config, {"garage/door": LABELS, "garage/car": ["car", "empty"],
                                          "front_yard/full": [f"l{i}" for i in range(101)]},
                                 {"garage/door": "door_v2", "garage/car": "cars", "front_yard/full": "imagenet"}))
    dev = config.device_id
    hub_topic, garage_topic, yard_topic = (f"homeassistant/device/{dev}/config",
                                           f"homeassistant/device/{dev}_garage/config",
                                           f"homeassistant/device/{dev}_front_yard/config")
    assert list(docs) == [hub_topic, garage_topic, yard_topic]  # the hub first
    hub, garage, yard = docs[hub_topic], docs[garage_topic], docs[yard_topic]
    assert hub["o"] == {"name": "edgecam", "sw": __version__}  # no invented support URL
    assert hub["dev"] == {"ids": [f"edgecam_{dev}"], "name": f"Edgecam {dev}", "mf": "edgecam",
                          "mdl": "edgecam daemon", "sw": __version__, "cu": "http://127.0.0.1:8099/"}
    assert garage["dev"] == {"ids": [f"edgecam_{dev}_garage"], "name": "Garage", "mf": "edgecam",
                             "mdl": "cars, door_v2", "sw": __version__, "via_device": f"edgecam_{dev}",
                             "sa": "Garage", "cu": "http://127.0.0.1:8099/"}
    assert yard["dev"]["name"] == "Front Yard" and "sa" not in yard["dev"]
    assert {c["name"] for c in garage["cmps"].values()} == {
        "Source", "Running", "Snapshot", "Last Snapshot", "Inference FPS", "Capture FPS", "Dropped Frames",
        "Door", "Car", "Door Open", "Door Latency", "Car Latency"}
    assert {c["p"] for c in garage["cmps"].values()} == {"sensor", "binary_sensor", "switch", "button", "image"}
    # the region sensors were the hub's up to 0.1: removed from it the way HA asks (the platform alone)
    assert {uid: comp for uid, comp in hub["cmps"].items() if "name" not in comp} == {
        f"edgecam_{dev}_{key}_state": {"p": "sensor"} for key in ("garage_door", "garage_car", "front_yard_full")}
    for doc in docs.values():
        for uid, comp in doc["cmps"].items():
            if comp == {"p": "sensor"}:
                continue
            assert comp["unique_id"] == uid and uid.startswith(f"edgecam_{dev}_")
            assert "availability_topic" in comp or comp["availability_mode"] == "all"
    door = garage["cmps"][f"edgecam_{dev}_garage_door_state"]
    assert (door["device_class"], door["options"]) == ("enum", LABELS)
    assert door["availability"] == [
        {"topic": f"{config.topic_prefix}/status", "payload_available": "online", "payload_not_available": "offline"},
        {"topic": f"{config.topic_prefix}/garage/availability", "payload_available": "online",
         "payload_not_available": "offline"}]
    assert "options" not in yard["cmps"][f"edgecam_{dev}_front_yard_full_state"]  # 101 labels: plain text
    binary = garage["cmps"][f"edgecam_{dev}_garage_door_binary"]
    assert binary["device_class"] == "door" and binary["state_topic"] == door["state_topic"]
    connected = garage["cmps"][f"edgecam_{dev}_garage_connected"]
    assert (connected["device_class"], connected["entity_category"]) == ("connectivity", "diagnostic")
    assert connected["availability_topic"] == f"{config.topic_prefix}/status"  # never unavailable with its camera
    assert garage["cmps"][f"edgecam_{dev}_garage_running"]["command_topic"] == \
        f"{config.topic_prefix}/garage/running/set"
    diagnostics = [c for d in docs.values() for c in d["cmps"].values() if c.get("entity_category") == "diagnostic"
                   and c["p"] == "sensor"]
    assert len(diagnostics) == 3 + 2 * 3 + 3 and all(c["expire_after"] == 30 for c in diagnostics)
    assert [c["name"] for c in diagnostics if c.get("enabled_by_default") is False] == [
        "Door Latency", "Car Latency", "Full Latency"]


def test_every_template_reads_a_key_its_topic_carries(broker):
    config = two_cameras(broker)
    docs = documents(Description(config, {"garage/door": LABELS}))
    state = RegionState("open", 1, 0.75, 1.7e9, (Label("open", 1, 0.75),), "closed").to_payload(
        config.device_id, "garage", "door")
    camera = {"captured": 30, "processed": 10, "dropped": 2}
    # the daemon's real stats snapshot, so a renamed key breaks this test, not Home Assistant
    latency = LatencyWindow()
    latency.add(12.5)
    regions = {}
    for camera_name, cfg in config.camera_configs().items():
        for name, region_cfg in cfg.regions.items():
            region = Region(camera_name, name, resolve(region_cfg, config))
            region.latency.add(3.0)
            regions[f"{camera_name}/{name}"] = _region_counters(region)
    stats = StatsCollector(lambda: {"captured": 30, "processed": 10, "regions": regions, "cameras": {
        "garage": dict(camera), "front_yard": dict(camera)}}, latency, LatencyWindow()).snapshot()
    checked = 0
    for doc in docs.values():
        for comp in doc["cmps"].values():
            template = comp.get("value_template")
            if template is None or "value_json.label in" in template:
                continue
            path = re.fullmatch(r"\{\{ value_json\.([\w.\[\]'/-]+) \}\}", template).group(1)
            source = stats if comp["state_topic"].endswith("/stats") else state
            assert _resolve(path, source) is not None, (comp["name"], path)
            for attribute in re.findall(r"value_json\.(\w+)", comp.get("json_attributes_template", "")):
                assert attribute in state
            checked += 1
    assert checked == 3 + 3 * 2 + 3 * 2  # hub diagnostics, each camera's, the region sensors and latencies


def test_single_source_keeps_its_result_sensors_on_the_hub(broker):
    config = mqtt_config(broker, discovery={"enabled": True})
    doc = discovery_payload(config)
    assert {c.get("name") for c in doc["cmps"].values()} == {None, "Top-1 Label", "Top-1 Score", "Inference Time",
                                                         "Inference FPS", "Capture FPS", "Latency"}
    result = make_result(3, "tabby", 0.75).to_payload()
    label = doc["cmps"][f"edgecam_{config.device_id}_top1_label"]
    assert label["state_topic"] == f"{config.topic_prefix}/result" and _resolve("top[0].label", result) == "tabby"
    camera = documents(Description(config))[f"homeassistant/device/{config.device_id}_default/config"]
    assert camera["dev"]["mdl"] == "resnet18_160_int8"
    assert f"edgecam_{config.device_id}_default_full_state" in camera["cmps"]


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
    assert retained.retain and retained.json()["dev"]["ids"] == [f"edgecam_{config.device_id}"]

    live.client.publish("homeassistant/status", b"offline", qos=1)
    time.sleep(0.5)
    assert len(live.messages(topic)) == 1  # only "online" triggers a re-send
    sent = time.monotonic()
    live.client.publish("homeassistant/status", b"online", qos=1)
    again = live.wait_for(topic, 2, timeout=5)[1]
    assert again.json() == first.json() and 0.04 <= again.at - sent < 2.0
    wait_until(lambda: sink.connected, what="still connected")
