"""Per-camera topics, Home Assistant's controls and the clean-up of what is gone, on a real broker."""

from __future__ import annotations

import json
import time

from edgecam.config import parse_config
from edgecam.publish.mqtt.announced import default_path
from tests.support.fake_control import FakeControl
from tests.support.mqtt import mqtt_config, wait_until
from tests.test_mqtt_discovery import two_cameras


def _state(garage: dict, yard: dict, paused: bool = False) -> dict:
    return {"device": "x", "paused": paused, "cameras": {"garage": garage, "front_yard": yard}}


def test_camera_topics_follow_the_state(broker, collector_factory, sink_factory):
    config = two_cameras(broker)
    prefix = config.topic_prefix
    hub = f"homeassistant/device/{config.device_id}/config"
    live = collector_factory(broker, [f"{prefix}/+/availability", f"{prefix}/+/connected", f"{prefix}/+/running",
                                      hub])
    sink = sink_factory(config)
    live.wait_for(hub)  # the session is republished: from now on only changes go out
    sink.publish_state(_state({"connected": True, "paused": False}, {"connected": False, "paused": False}))
    assert live.wait_payload(f"{prefix}/garage/availability", b"online").retain is False  # (live delivery)
    live.wait_payload(f"{prefix}/front_yard/availability", b"offline")
    assert [m.payload for m in live.wait_for(f"{prefix}/front_yard/connected")] == [b"OFF"]
    assert [m.payload for m in live.wait_for(f"{prefix}/garage/running")] == [b"ON"]

    sink.publish_state(_state({"connected": True, "paused": True}, {"connected": False, "paused": False}))
    live.wait_payload(f"{prefix}/garage/running", b"OFF")
    live.wait_payload(f"{prefix}/garage/availability", b"offline")
    sink.publish_state(_state({"connected": True, "paused": False}, {"connected": True, "paused": False},
                              paused=True))  # a pause of every camera
    live.wait_payload(f"{prefix}/front_yard/connected", b"ON")
    time.sleep(0.3)
    assert [m.payload for m in live.messages(f"{prefix}/front_yard/availability")] == [b"offline"]  # still paused
    assert [m.payload for m in live.messages(f"{prefix}/garage/connected")] == [b"ON"]  # only changes are sent

    late = collector_factory(broker, [f"{prefix}/+/availability", f"{prefix}/+/running"])
    retained = {t: late.wait_for(f"{prefix}/{t}")[0] for t in ("garage/availability", "front_yard/running")}
    assert {t: (m.payload, m.retain) for t, m in retained.items()} == {
        "garage/availability": (b"offline", True), "front_yard/running": (b"OFF", True)}


def test_switch_and_button_run_the_ordinary_commands(broker, collector_factory, sink_factory):
    config = mqtt_config(broker, discovery={"enabled": True})
    prefix = config.topic_prefix
    control = FakeControl(snapshot=b"\xff\xd8jpeg-of-default\xff\xd9")
    live = collector_factory(broker, [f"{prefix}/cmd/response", f"{prefix}/default/snapshot"])
    sink = sink_factory(config, control)
    wait_until(lambda: sink.connected, what="connected")
    time.sleep(0.3)  # subscribed after the connect
    live.client.publish(f"{prefix}/default/running/set", b"OFF", qos=1)
    wait_until(lambda: ("pause", "default") in control.calls, what="the pause")
    live.client.publish(f"{prefix}/default/running/set", b"ON", qos=1)
    wait_until(lambda: ("resume", "default") in control.calls, what="the resume")
    live.client.publish(f"{prefix}/default/snapshot/press", b"PRESS", qos=1)
    picture = live.wait_for(f"{prefix}/default/snapshot")[0]
    assert picture.payload == b"\xff\xd8jpeg-of-default\xff\xd9"
    replies = [m.json() for m in live.wait_for(f"{prefix}/cmd/response", 3)]
    assert [(r["cmd"], r["ok"], r["camera"], r["id"]) for r in replies] == [
        ("pause", True, "default", "homeassistant"), ("resume", True, "default", "homeassistant"),
        ("snapshot", True, "default", "homeassistant")]
    late = collector_factory(broker, [f"{prefix}/default/snapshot"])
    assert late.wait_for(f"{prefix}/default/snapshot")[0].retain  # the image entity finds it after a restart
    live.client.publish(f"{prefix}/default/running/set", b"MAYBE", qos=1)
    assert live.wait_for(f"{prefix}/cmd/response", 4)[3].json()["ok"] is False
    assert control.calls.count(("pause", "default")) == 1


def test_what_is_no_longer_configured_is_cleared_at_start_and_after_a_change(broker, collector_factory,
                                                                             sink_factory):
    config = two_cameras(broker)
    dev, prefix = config.device_id, config.topic_prefix
    yard = f"homeassistant/device/{dev}_front_yard/config"
    garage = f"homeassistant/device/{dev}_garage/config"
    car = f"{prefix}/garage/car/state"
    first = sink_factory(config)
    wait_until(lambda: first.connected, what="connected")
    first.publish_region_state({"camera": "garage", "region": "car", "label": "car", "since": "x"})
    collector_factory(broker, [yard, car]).wait_for(car)
    wait_until(lambda: car in json.loads(default_path(config).read_text())["topics"], what="the announced file")
    first.stop()

    without_yard = config.model_copy(update={"cameras": parse_config({"cameras": {"garage": {
        "uri": "0", "regions": {"door": {}, "car": {}}}}}).cameras})
    live = collector_factory(broker, [yard, car, garage, f"{prefix}/front_yard/#"])
    second = sink_factory(without_yard)
    assert live.wait_payload(yard, b"").payload == b""  # the device removed in Home Assistant
    assert {m.payload for m in live.wait_for(f"{prefix}/front_yard/running")} >= {b""}
    live.wait_for(garage)
    assert not any(m.payload == b"" for m in live.messages(car))  # still configured: kept
    late = collector_factory(broker, ["homeassistant/device/#"])
    time.sleep(0.3)
    assert late.messages(yard) == [] and late.wait_for(garage)[0].retain
    second.stop()

    sink = sink_factory(without_yard.model_copy(update={"cameras": parse_config({"cameras": {"garage": {
        "uri": "0", "regions": {"door": {}}}}}).cameras}), start=False)
    sink.start()
    wait_until(lambda: sink.connected, what="connected")
    live.wait_payload(car, b"")  # a region removed (while stopped): its retained state cleared
    stub = f"edgecam_{dev}_garage_car_state"
    wait_until(lambda: live.messages(garage)[-1].json()["cmps"].get(stub, {}).get("name") is None,
               what="the car sensor dropped from the garage device")
    assert live.messages(garage)[-1].json()["cmps"][stub] == {"p": "sensor"}  # the way Home Assistant asks
    only_door = json.loads(default_path(config).read_text())["topics"]
    assert car not in only_door and f"{prefix}/garage/door/state" in only_door

    sink.describe(config, {}, {})  # a live change brings the yard back, then takes it away again
    wait_until(lambda: live.messages(yard)[-1].payload != b"", what="the yard announced again")
    assert live.messages(yard)[-1].json()["dev"]["name"] == "Front Yard"
    sink.describe(without_yard, {}, {})
    wait_until(lambda: [m.payload for m in live.messages(yard)][-1:] == [b""], what="the yard cleared again")


def test_a_new_model_republishes_the_options_and_a_change_refreshes_the_picture(broker, collector_factory,
                                                                                sink_factory):
    config = mqtt_config(broker, discovery={"enabled": True, "snapshot_on_change": True})
    prefix, dev = config.topic_prefix, config.device_id
    camera_topic = f"homeassistant/device/{dev}_default/config"
    live = collector_factory(broker, [camera_topic, f"{prefix}/default/snapshot"])
    control = FakeControl(snapshot=b"\xff\xd8changed\xff\xd9")
    sink = sink_factory(config, control, wait_for_description=True)
    wait_until(lambda: sink.connected, what="connected")
    time.sleep(0.5)
    assert live.messages(camera_topic) == []  # nothing announced before the daemon describes what runs
    sink.describe(config, {"default/full": ["cat", "dog"]}, {"default/full": "pets"})
    first = live.wait_for(camera_topic)[0].json()
    assert first["cmps"][f"edgecam_{dev}_default_full_state"]["options"] == ["cat", "dog"]
    assert first["dev"]["mdl"] == "pets"
    sink.describe(config, {"default/full": ["cat", "dog", "fox"]}, {"default/full": "pets_v2"})  # a deploy
    second = live.wait_for(camera_topic, 2)[1].json()
    assert second["cmps"][f"edgecam_{dev}_default_full_state"]["options"] == ["cat", "dog", "fox"]
    assert second["dev"]["mdl"] == "pets_v2"

    sink.publish_region_state({"camera": "default", "region": "full", "label": "fox", "since": "x"})
    picture = live.wait_for(f"{prefix}/default/snapshot")[0]
    assert picture.payload == b"\xff\xd8changed\xff\xd9" and ("snapshot_jpeg", "default") in control.calls
