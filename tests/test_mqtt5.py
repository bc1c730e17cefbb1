"""MQTT 5 where it helps, against a real Mosquitto: content types and user properties on
every message, message expiry so a stale frame is never delivered late, and a session
the broker keeps across a dropped connection. MQTT 3.1.1 devices send no properties."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.fake_control import FakeControl
from tests.support.mqtt import Collector, make_result, mqtt_config, wait_until
from tests.test_mqtt_outbox import region_state


def users(props) -> dict[str, str]:
    return dict(getattr(props, "UserProperty", []))


def test_every_message_says_what_it_carries_and_whose_it_is(broker, collector_factory, sink_factory):
    config = mqtt_config(broker, protocol="5", result_expiry_s=30)
    prefix, device = config.topic_prefix, config.device_id
    collector = collector_factory(broker, [f"{prefix}/#"], protocol="5")
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="connected")
    sink.publish_result(make_result(0, device=device))
    sink.publish_region_state(region_state(device, 0))
    result = collector.wait_for(f"{prefix}/result")[0].props
    assert (result.ContentType, result.PayloadFormatIndicator) == ("application/json", 1)
    assert users(result) == {"device": device, "camera": "default", "region": "full"}
    assert 29 <= result.MessageExpiryInterval <= 30  # the rest of result_expiry_s
    state = collector.wait_for(f"{prefix}/garage/door/state")[0].props
    assert state.ContentType == "application/json" and not hasattr(state, "MessageExpiryInterval")
    assert users(state) == {"device": device, "camera": "garage", "region": "door"}
    status = collector.wait_payload(f"{prefix}/status", b"online").props
    assert (status.ContentType, users(status)) == ("text/plain", {"device": device})


def test_a_311_device_sends_no_properties(broker, collector_factory, sink_factory):
    config = mqtt_config(broker, protocol="3.1.1")
    collector = collector_factory(broker, [f"{config.topic_prefix}/result"], protocol="5")
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="connected")
    sink.publish_result(make_result(0, device=config.device_id))
    props = collector.wait_for(f"{config.topic_prefix}/result")[0].props
    assert not hasattr(props, "ContentType") and users(props) == {}


def test_the_broker_never_delivers_an_expired_frame_late_but_keeps_state_changes(broker, sink_factory):
    """A consumer with a persistent session is away for 3 s; frames (expiry 1 s) published
    meanwhile are gone when it returns, the state change is not."""
    config = mqtt_config(broker, protocol="5", qos=1, result_expiry_s=1)
    prefix = config.topic_prefix
    topics = [f"{prefix}/result", f"{prefix}/garage/door/state"]
    away = Collector(broker, topics, protocol="5", client_id="consumer-away", session_expiry_s=300)
    away.close()  # a clean DISCONNECT keeps the session: the broker queues QoS 1 messages for it
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="connected")
    for seq in range(3):
        sink.publish_result(make_result(seq, device=config.device_id))
    sink.publish_region_state(region_state(config.device_id, 0))
    wait_until(lambda: sink.counters()["outbox"]["pending"] == 0, what="state acknowledged")
    time.sleep(3.0)
    back = Collector(broker, topics, protocol="5", client_id="consumer-away", session_expiry_s=300)
    try:
        assert back.wait_for(topics[1], 1)[0].json()["label"] == "open"
        sink.publish_result(make_result(99, device=config.device_id))  # fresh frames still flow
        assert [m.json()["seq"] for m in back.wait_for(topics[0], 1)] == [99]
    finally:
        back.close()


@pytest.mark.parametrize("session_expiry_s", [0, 60])
def test_the_broker_keeps_the_devices_session_while_it_is_away(broker, collector_factory, sink_factory,
                                                               session_expiry_s):
    """A command sent while the device's connection is down reaches it after the reconnect
    only when the broker kept its session (session_expiry_s > 0)."""
    config = mqtt_config(broker, protocol="5", session_expiry_s=session_expiry_s)
    prefix = config.topic_prefix
    control = FakeControl()
    collector = collector_factory(broker, [f"{prefix}/cmd/response", f"{prefix}/status"])
    sink = sink_factory(config, control)

    def command(cmd: str, cid: str) -> None:
        collector.client.publish(f"{prefix}/cmd", json.dumps({"cmd": cmd, "id": cid}), qos=1).wait_for_publish(5)

    def replies() -> list[str]:
        return [m.json().get("id") for m in collector.messages(f"{prefix}/cmd/response")]

    def onlines() -> int:  # the sink subscribes to <prefix>/cmd before it publishes "online"
        return sum(m.payload == b"online" for m in collector.messages(f"{prefix}/status"))

    wait_until(lambda: onlines() == 1, what="connected")
    command("status", "before")
    wait_until(lambda: replies() == ["before"], what="the device answers")
    client = sink._link.client  # the sink's own paho client: drop the connection without a clean stop
    client.disconnect()
    client.loop_stop()
    command("pause", "while-away")
    client.reconnect()
    client.loop_start()
    wait_until(lambda: onlines() == 2, what="reconnected")
    command("status", "after")
    wait_until(lambda: "after" in replies(), what="the device answers again")
    if session_expiry_s:
        assert replies() == ["before", "while-away", "after"] and control.paused
    else:
        assert replies() == ["before", "after"] and not control.paused
