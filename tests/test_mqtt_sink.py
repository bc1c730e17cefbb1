"""MqttSink against a real Mosquitto: round trip, availability, Last Will, outages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from edgecam.publish.mqtt import MqttSink
from tests.support.fake_control import FakeControl
from tests.support.mqtt import Broker, make_result, mqtt_config, wait_until


@pytest.mark.parametrize("qos, protocol", [(0, "3.1.1"), (1, "3.1.1"), (2, "5")])
def test_results_round_trip_validate_and_keep_order(broker, collector_factory, sink_factory, result_validator,
                                                    qos, protocol):
    config = mqtt_config(broker, qos=qos, protocol=protocol)
    topic = f"{config.topic_prefix}/result"
    collector = collector_factory(broker, [topic])
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="sink connected")
    for seq in range(25):
        sink.publish_result(make_result(seq, device=config.device_id))
    messages = collector.wait_for(topic, 25)
    payloads = [m.json() for m in messages]
    for payload in payloads:
        result_validator.validate(payload)
    assert [p["seq"] for p in payloads] == list(range(25))
    assert {p["device"] for p in payloads} == {config.device_id}
    assert all(not m.retain for m in messages)
    assert payloads[0] == json.loads(json.dumps(make_result(0, device=config.device_id).to_payload())) | {
        "captured_at": payloads[0]["captured_at"]}
    wait_until(lambda: sink.counters()["published"] == 25, what="25 published")
    assert sink.counters()["dropped"] == 0 and sink.counters()["queued"] == 0


def test_online_retained_after_start_offline_after_clean_stop(broker, collector_factory):
    config = mqtt_config(broker)
    control = FakeControl()
    sink = MqttSink(config, control)
    sink.start()
    try:
        wait_until(lambda: sink.connected, what="sink connected")
        late = collector_factory(broker, [f"{config.topic_prefix}/status", f"{config.topic_prefix}/state"])
        status = late.wait_for(f"{config.topic_prefix}/status")[0]
        assert (status.payload, status.retain) == (b"online", True)
        state = late.wait_for(f"{config.topic_prefix}/state")[0]
        assert state.retain and state.json() == control.state()
    finally:
        sink.stop()
    assert not sink.connected
    after = collector_factory(broker, [f"{config.topic_prefix}/status"])
    status = after.wait_for(f"{config.topic_prefix}/status")[0]
    assert (status.payload, status.retain) == (b"offline", True)


def test_stats_not_retained_and_state_retained(broker, collector_factory, sink_factory):
    config = mqtt_config(broker)
    sink = sink_factory(config)
    wait_until(lambda: sink.counters()["connected"], what="connected")
    live = collector_factory(broker, [f"{config.topic_prefix}/stats", f"{config.topic_prefix}/state"])
    sink.publish_stats({"fps": 12.5, "dropped": 3})
    assert live.wait_for(f"{config.topic_prefix}/stats")[0].json() == {"fps": 12.5, "dropped": 3}
    sink.publish_state({"paused": True, "device": config.device_id})
    # The sink publishes from its worker thread: wait until the broker has the new state,
    # so the late subscriber below can only get it as a retained message.
    wait_until(lambda: any(m.json() == {"paused": True, "device": config.device_id}
                           for m in live.messages(f"{config.topic_prefix}/state")), what="state at the broker")
    late = collector_factory(broker, [f"{config.topic_prefix}/state", f"{config.topic_prefix}/stats"])
    state = late.wait_for(f"{config.topic_prefix}/state")[0]
    assert state.retain and state.json() == {"paused": True, "device": config.device_id}
    time.sleep(0.3)
    assert late.messages(f"{config.topic_prefix}/stats") == []  # stats are not retained


_CHILD = """
import sys, time
from edgecam.config import parse_config
from edgecam.publish.mqtt import MqttSink
cfg = parse_config({"device_id": sys.argv[1], "mqtt": {"host": "127.0.0.1", "port": int(sys.argv[2]),
                    "keepalive_s": 5, "reconnect": {"initial_s": 0.2, "max_s": 1.0}}})
sink = MqttSink(cfg)
sink.start()
while not sink.connected:
    time.sleep(0.02)
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["kill-9", "frozen"])
def test_last_will_offline_when_the_client_vanishes(broker, collector_factory, sig):
    """kill -9: the kernel closes the socket. SIGSTOP: the process is frozen with its
    socket open (power cut, cable pulled): only the keepalive can notice."""
    config = mqtt_config(broker)
    topic = f"{config.topic_prefix}/status"
    collector = collector_factory(broker, [topic])
    child = subprocess.Popen([sys.executable, "-c", _CHILD, config.device_id, str(broker.port)],
                             stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        collector.wait_payload(topic, b"online")
        os.kill(child.pid, sig)
        killed = time.monotonic()
        # A closed socket is noticed at once. A silent client only after 1.5 x keepalive,
        # and mosquitto 2.0 runs its keepalive sweep only every ~5 s (keepalive.c): allow that.
        limit = 1.5 * 5 + (6.0 if sig == signal.SIGSTOP else 0.0)
        offline = collector.wait_payload(topic, b"offline", timeout=limit + 2)
        assert offline.at - killed <= limit
        if sig == signal.SIGSTOP:
            assert offline.at - killed >= 1.5 * 5 - 1.0  # it really was the keepalive, not a closed socket
    finally:
        child.kill()
        child.wait(timeout=5)
    late = collector_factory(broker, [topic])
    assert (late.wait_for(topic)[0].payload, late.wait_for(topic)[0].retain) == (b"offline", True)


def _failures(sink: MqttSink) -> int:
    return sink.counters()["connect_failures"]


def test_broker_outage_queue_drops_oldest_counted_then_everything_resumes(broker, collector_factory, sink_factory):
    # Reconnect every 2 s: after a failed attempt there is time to restart the broker and
    # subscribe a collector before the sink comes back (the broker keeps nothing across restarts).
    config = mqtt_config(broker, queue_size=5, reconnect={"initial_s": 2.0, "max_s": 2.0})
    prefix = config.topic_prefix
    control = FakeControl()
    collector = collector_factory(broker, [f"{prefix}/result"])
    sink = sink_factory(config, control)
    wait_until(lambda: sink.connected, what="connected")
    for seq in range(10):
        sink.publish_result(make_result(seq))
        time.sleep(0.01)
    assert [m.json()["seq"] for m in collector.wait_for(f"{prefix}/result", 10)] == list(range(10))

    broker.stop()
    outage = time.monotonic()
    wait_until(lambda: not sink.connected, what="sink notices the outage")
    for seq in range(10, 22):  # 12 results while down, queue holds 5
        sink.publish_result(make_result(seq))
    counters = sink.counters()
    assert (counters["queued"], counters["dropped"], counters["connected"]) == (5, 7, False)

    time.sleep(max(0.0, 4.5 - (time.monotonic() - outage)))
    before = _failures(sink)
    wait_until(lambda: _failures(sink) > before, timeout=5, what="a failed reconnect attempt")
    broker.start()
    assert time.monotonic() - outage >= 4.5
    fresh = collector_factory(broker, [f"{prefix}/result", f"{prefix}/status", f"{prefix}/state"])
    assert sink.connected is False  # the collector was ready first
    fresh.wait_payload(f"{prefix}/status", b"online", timeout=10)
    assert fresh.wait_for(f"{prefix}/state")[0].json()["device"] == "fake"
    resumed = fresh.wait_for(f"{prefix}/result", 5)
    assert [m.json()["seq"] for m in resumed] == [17, 18, 19, 20, 21]  # the newest 5, in order
    for seq in range(22, 27):
        sink.publish_result(make_result(seq))
    assert [m.json()["seq"] for m in fresh.wait_for(f"{prefix}/result", 10)] == list(range(17, 27))
    counters = sink.counters()
    assert counters["dropped"] == 7 and counters["queued"] == 0 and counters["published"] == 20
    assert counters["connects"] == 2


def test_start_without_broker_then_broker_appears(tmp_path, collector_factory, sink_factory):
    broker = Broker(tmp_path / "late")  # port chosen, nothing listening yet
    # 10 s between attempts: the broker starts and the collector subscribes before the next one,
    # however busy the machine (else the queued results, QoS 0, would go out before anyone listens).
    config = mqtt_config(broker, queue_size=4, reconnect={"initial_s": 10.0, "max_s": 10.0})
    prefix = config.topic_prefix
    began = time.monotonic()
    sink = sink_factory(config, FakeControl())
    assert time.monotonic() - began < 0.5  # start() never waits for the broker
    for seq in range(10):
        sink.publish_result(make_result(seq))
        sink.publish_stats({"fps": 1.0})  # dropped silently while offline
    counters = sink.counters()
    assert (counters["queued"], counters["dropped"], counters["published"]) == (4, 6, 0)
    before = _failures(sink)
    # The first attempt may have failed before ``before`` was read: the next one is 10 s later,
    # plus jitter, plus whatever a busy machine adds.
    wait_until(lambda: _failures(sink) > before, timeout=30, what="a failed connection attempt")
    try:
        broker.start()
        collector = collector_factory(broker, [f"{prefix}/result", f"{prefix}/stats"])
        wait_until(lambda: sink.connected, timeout=25, what="sink connects once the broker is up")
        wait_until(lambda: sink.counters()["queued"] == 0, timeout=10, what="the queued results sent")
        sink.publish_result(make_result(10))
        seqs = [m.json()["seq"] for m in collector.wait_for(f"{prefix}/result", 5)]
        assert seqs == [6, 7, 8, 9, 10]  # queued ones first, in order, then the new one
        assert collector.messages(f"{prefix}/stats") == []
        assert sink.counters()["dropped"] == 6
    finally:
        sink.stop()
        broker.stop()


def test_stop_without_ever_connecting_is_quick_and_quiet(tmp_path, caplog):
    broker = Broker(tmp_path / "never")  # never started
    sink = MqttSink(mqtt_config(broker, device_id="nobroker"))
    sink.start()
    for seq in range(3):
        sink.publish_result(make_result(seq))
    wait_until(lambda: sink.counters()["connect_failures"] >= 1, what="a failed attempt")
    began = time.monotonic()
    sink.stop()
    assert time.monotonic() - began < 2.5
    counters = sink.counters()
    outbox = counters.pop("outbox")
    assert {key: outbox[key] for key in ("pending", "bytes", "evicted", "durable", "in_flight", "delivered",
                                         "refused", "unwritten")} == \
        {"pending": 0, "bytes": 0, "evicted": 0, "durable": False, "in_flight": 0, "delivered": 0, "refused": 0,
         "unwritten": 0}  # (closed by stop())
    assert counters.pop("commands") == {"handled": 0, "rejected": {}}
    assert counters | {"connect_failures": 0} == {"queued": 3, "dropped": 0, "expired": 0, "published": 0,
                                                  "errors": 0, "connect_failures": 0, "connects": 0,
                                                  "connected": False}
    assert any("3 queued result(s) not delivered" in r.getMessage() for r in caplog.records)
    assert any(f"cannot connect to broker 127.0.0.1:{broker.port}: Connection refused" in r.getMessage()
               for r in caplog.records)
