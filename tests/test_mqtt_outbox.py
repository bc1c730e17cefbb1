"""State changes through the MqttSink's durable outbox, against a real Mosquitto:
delivered in order with their original times after an outage, deleted only on PUBACK,
the retained value ends as the newest state, eviction at the size limit, and results
the on_change policy admits kept like state changes."""

from __future__ import annotations

import dataclasses
import time

import pytest

from edgecam.model.types import Label
from edgecam.regions.debounce import RegionState
from tests.support.mqtt import make_result, mqtt_config, wait_until

BASE_WALL = 1_790_000_000.0  # original times far from "now": a re-stamped payload would show


def region_state(device: str, i: int, camera: str = "garage", region: str = "door") -> dict:
    label, previous = ("open", "closed") if i % 2 == 0 else ("closed", "open")
    state = RegionState(label, i, 0.9, BASE_WALL + 60.0 * i, (Label(label, i, 0.9),), previous if i else None)
    return state.to_payload(device, camera, region)


def _down_until_a_retry(broker, sink) -> None:
    """Stop the broker and wait for a failed reconnect: the next try is a full delay away, time
    enough to start the broker and subscribe before the sink is back (it keeps nothing)."""
    broker.stop()
    wait_until(lambda: not sink.connected, what="sink notices the outage")
    before = sink.counters()["connect_failures"]
    wait_until(lambda: sink.counters()["connect_failures"] > before, timeout=10, what="a failed reconnect")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_outage_then_every_change_in_order_with_its_time_then_new_ones(broker, collector_factory, sink_factory,
                                                                        protocol):
    config = mqtt_config(broker, protocol=protocol, reconnect={"initial_s": 2.0, "max_s": 2.0})
    prefix, device = config.topic_prefix, config.device_id
    door, window = f"{prefix}/garage/door/state", f"{prefix}/garage/window/state"
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="connected")
    _down_until_a_retry(broker, sink)
    sent = [region_state(device, i) for i in range(12)]
    other = region_state(device, 3, region="window")
    for state in sent[:6] + [other] + sent[6:]:
        sink.publish_region_state(state)
    outbox = sink.counters()["outbox"]
    assert (outbox["pending"], outbox["durable"]) == (13, True)

    broker.start()
    collector = collector_factory(broker, [f"{prefix}/+/+/state"])
    got = collector.wait_for(door, 12, timeout=15)
    assert [m.json() for m in got] == sent  # exactly these, in order, "since" as it happened
    assert collector.wait_for(window, 1)[0].json() == other
    wait_until(lambda: sink.counters()["outbox"]["pending"] == 0, what="outbox emptied by PUBACKs")
    assert sink.counters()["outbox"]["delivered"] == 13

    late = collector_factory(broker, [door])  # the retained value is the newest state, not a replayed one
    retained = late.wait_for(door, 1)[0]
    assert retained.retain and retained.json() == sent[-1]

    newer = region_state(device, 12)
    sink.publish_region_state(newer)
    assert collector.wait_for(door, 13)[-1].json() == newer
    time.sleep(0.3)
    assert len(collector.messages(door)) == 13  # nothing twice


def test_an_entry_leaves_the_outbox_only_on_the_brokers_puback(broker, collector_factory, sink_factory):
    config = mqtt_config(broker, keepalive_s=30)
    door = f"{config.topic_prefix}/garage/door/state"
    collector = collector_factory(broker, [door])
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="connected")
    broker.pause()  # the connection stays open; nothing is read, nothing acknowledged
    try:
        sent = [region_state(config.device_id, i) for i in range(5)]
        for state in sent:
            sink.publish_region_state(state)
        wait_until(lambda: sink.counters()["outbox"]["in_flight"] == 5, what="entries handed to paho")
        time.sleep(1.0)
        assert sink.counters()["outbox"]["pending"] == 5  # sent, not acknowledged: kept
    finally:
        broker.resume()
    wait_until(lambda: sink.counters()["outbox"]["pending"] == 0, what="PUBACKs")
    assert [m.json() for m in collector.wait_for(door, 5)] == sent


def test_full_outbox_keeps_the_newest_and_counts_what_it_dropped(broker, collector_factory, sink_factory):
    config = mqtt_config(broker, reconnect={"initial_s": 2.0, "max_s": 2.0}, outbox={"max_bytes": 65_536})
    door = f"{config.topic_prefix}/garage/door/state"
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="connected")
    _down_until_a_retry(broker, sink)
    sent = [region_state(config.device_id, i) for i in range(400)]
    for state in sent:
        sink.publish_region_state(state)
    outbox = sink.counters()["outbox"]
    kept = outbox["pending"]
    assert 0 < kept < 400 and outbox["evicted"] == 400 - kept and outbox["bytes"] <= 65_536
    broker.start()
    collector = collector_factory(broker, [door])
    assert [m.json() for m in collector.wait_for(door, kept, timeout=15)] == sent[-kept:]


def test_on_change_results_are_kept_like_state_changes(broker, collector_factory, sink_factory):
    """During an outage the per-frame queue keeps its newest 2; every durable (on_change) result
    arrives, in order, and before the queued stream resumes."""
    config = mqtt_config(broker, queue_size=2, reconnect={"initial_s": 2.0, "max_s": 2.0})
    topic = f"{config.topic_prefix}/result"
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="connected")
    _down_until_a_retry(broker, sink)
    changes = [dataclasses.replace(make_result(seq, "tabby" if seq % 2 else "goldfish", device=config.device_id),
                                   durable=True) for seq in range(0, 20, 2)]
    stream = [make_result(seq, device=config.device_id) for seq in range(1, 21, 2)]
    for change, frame in zip(changes, stream):
        sink.publish_result(change)
        sink.publish_result(frame)
    assert sink.counters()["dropped"] == 8 and sink.counters()["outbox"]["pending"] == 10
    broker.start()
    collector = collector_factory(broker, [topic])
    seqs = [m.json()["seq"] for m in collector.wait_for(topic, 12, timeout=15)]
    assert seqs == [c.seq for c in changes] + [17, 19]


def test_results_older_than_their_expiry_are_never_sent(broker, collector_factory, sink_factory):
    config = mqtt_config(broker, result_expiry_s=5)
    topic = f"{config.topic_prefix}/result"
    collector = collector_factory(broker, [topic])
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="connected")
    sink.publish_result(make_result(0, mono=time.monotonic() - 6.0))  # captured 6 s ago
    sink.publish_result(make_result(1, mono=time.monotonic() - 4.0))
    assert [m.json()["seq"] for m in collector.wait_for(topic, 1)] == [1]
    assert sink.counters()["expired"] == 1 and sink.counters()["published"] == 1


def test_messages_paho_took_while_disconnected_count_as_unacknowledged(tmp_path):
    """paho's is_published() raises for a message published while disconnected (rc NO_CONN),
    even once delivered; the fleet load test caught a reconnect stalling on exactly that."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import MQTTErrorCode

    from edgecam.publish.mqtt.outbox import Outbox
    from edgecam.publish.mqtt.pump import OutboxPump
    from edgecam.publish.mqtt.results import Queued, ResultQueue

    def info(mid: int, rc: MQTTErrorCode, published: bool) -> mqtt.MQTTMessageInfo:
        handle = mqtt.MQTTMessageInfo(mid)
        handle.rc = rc
        if published:
            handle._set_as_published()  # what paho does on the PUBACK
        return handle

    with pytest.raises(RuntimeError):
        info(1, MQTTErrorCode.MQTT_ERR_NO_CONN, True).is_published()

    results = ResultQueue(10, 0)
    items = [Queued("t", b"%d" % i, "c", "r", 0.0) for i in range(3)]
    results.handed(info(1, MQTTErrorCode.MQTT_ERR_SUCCESS, True), items[0])
    results.handed(info(2, MQTTErrorCode.MQTT_ERR_NO_CONN, True), items[1])
    results.handed(info(3, MQTTErrorCode.MQTT_ERR_SUCCESS, False), items[2])
    assert results.requeue_unacked() == 2 and list(results.pending) == items[1:]

    outbox = Outbox(tmp_path / "o.sqlite3", 1_000_000).open()
    handles = iter([info(4, MQTTErrorCode.MQTT_ERR_SUCCESS, True), info(5, MQTTErrorCode.MQTT_ERR_NO_CONN, True)])
    pump = OutboxPump(outbox, lambda entry, retain: next(handles))
    first, second = outbox.append("a", b"1", True), outbox.append("a", b"2", True)
    assert pump.pump() == 2  # stops after the NO_CONN one
    assert pump.collect() == 1 and outbox.pending_after(0, 10) == [second] and first.id < second.id
