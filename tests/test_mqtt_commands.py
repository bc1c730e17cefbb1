"""Commands: the pure parser (property-tested) and the MQTT round trip on a real broker."""

from __future__ import annotations

import json
import logging
import random
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecam.errors import ConfigError
from edgecam.publish.mqtt.commands import COMMANDS, SETTINGS, CommandError, handle_command, parse_command
from tests.support.fake_control import FakeControl
from tests.support.mqtt import make_result, mqtt_config, wait_until

MAX = 256

# ----------------------------------------------------------------- strategies
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | \
    st.text(max_size=12)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) |
                     st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def _dump(obj) -> bytes:
    return json.dumps(obj).encode()


def _wrong_for(kind):
    if kind is str:
        return _json.filter(lambda v: not isinstance(v, str))
    if kind is int:
        return _json.filter(lambda v: isinstance(v, bool) or not isinstance(v, int))
    return _json.filter(lambda v: isinstance(v, bool) or not isinstance(v, (int, float)))


_bad_setting = st.sampled_from(sorted(SETTINGS)).flatmap(
    lambda key: _wrong_for(SETTINGS[key][0]).map(lambda v: {"cmd": "set", key: v}))
_out_of_range = st.one_of(
    st.floats(1.0001, 1e9).map(lambda v: {"cmd": "set", "min_score": v}),
    st.floats(-1e9, -0.0001).map(lambda v: {"cmd": "set", "change_delta": v}),
    st.integers(-1000, 0).map(lambda v: {"cmd": "set", "smoothing": v}),
    st.sampled_from(["sometimes", "EVERY", ""]).map(lambda v: {"cmd": "set", "policy": v}),
    st.floats(-1e6, 0).map(lambda v: {"cmd": "set", "interval_hz": v}),
)
MALFORMED = st.one_of(
    st.binary(max_size=120),  # junk
    st.binary(max_size=60).map(lambda b: b'{"cmd":"' + b + b'\xff"}'),  # never valid UTF-8
    _json.filter(lambda v: not isinstance(v, dict)).map(_dump),  # not an object
    st.dictionaries(st.text(max_size=6).filter(lambda k: k != "cmd"), _json, max_size=3).map(_dump),  # no cmd
    _json.filter(lambda v: not isinstance(v, str)).map(lambda v: _dump({"cmd": v})),  # cmd not a string
    st.text(max_size=30).filter(lambda c: c not in COMMANDS).map(lambda c: _dump({"cmd": c})),  # unknown
    st.tuples(st.sampled_from(COMMANDS), st.sampled_from([True, 1.5, [], {}, "x" * 200])).map(
        lambda t: _dump({"cmd": t[0], "id": t[1]})),  # bad id
    st.tuples(st.sampled_from(["pause", "resume", "snapshot", "status"]), st.text(min_size=1, max_size=6)
              .filter(lambda k: k not in ("cmd", "id"))).map(lambda t: _dump({"cmd": t[0], t[1]: 1})),  # extra key
    _bad_setting.map(_dump),
    _out_of_range.map(_dump),
    st.text(min_size=1, max_size=8).filter(lambda k: k not in SETTINGS and k not in ("cmd", "id")).map(
        lambda k: _dump({"cmd": "set", k: 1})),  # unknown setting
    st.just(_dump({"cmd": "set"})),  # nothing to set
    st.sampled_from([b'{"cmd":"set","min_score":NaN}', b'{"cmd":"set","max_fps":Infinity}', b"[" * 5000,
                     b'{"cmd":"pause"', b"", b"null", b'{"cmd":"pause"}' + b" " * MAX]),  # NaN, depth, oversize
    st.binary(min_size=MAX + 1, max_size=MAX + 50),  # oversized junk
)


@settings(max_examples=400, deadline=None)
@given(payload=MALFORMED)
def test_malformed_payloads_get_an_error_reply_and_change_nothing(payload):
    control = FakeControl()
    outcome = handle_command(payload, control, MAX)
    assert outcome.reply["ok"] is False
    assert isinstance(outcome.reply["error"], str) and outcome.reply["error"]
    assert outcome.snapshot is None and outcome.state is None
    assert control.calls == [] and control.state_calls == 0 and control.paused is False
    json.dumps(outcome.reply)  # always serialisable


_valid_settings = st.fixed_dictionaries({}, optional={
    "policy": st.sampled_from(["every", "on_change", "interval"]),
    "min_score": st.floats(0, 1),
    "change_delta": st.floats(0, 1),
    "heartbeat_s": st.floats(0.001, 86400),
    "interval_hz": st.floats(0.001, 1000),
    "max_fps": st.integers(0, 1000),
    "smoothing": st.integers(1, 100),
}).filter(bool)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from([c for c in COMMANDS if c not in ("capture", "config")]),
       cid=st.none() | st.integers() | st.text(max_size=20),
       values=_valid_settings)
def test_valid_commands_parse_with_their_fields(name, cid, values):
    obj = {"cmd": name, **({"id": cid} if cid is not None else {}), **(values if name == "set" else {})}
    command = parse_command(_dump(obj), 4096)
    assert (command.cmd, command.id) == (name, cid)
    assert dict(command.settings) == (values if name == "set" else {})
    if name == "set":
        assert all(type(v) is (float if SETTINGS[k][0] is float else SETTINGS[k][0])
                   for k, v in command.settings.items())


@pytest.mark.parametrize("payload, message", [
    (b"\xff\xfe", "not valid UTF-8"),
    (b"x" * 300, "payload too large (300 bytes > 256)"),
    (b"{", "invalid JSON"),
    (b"[1]", "must be a JSON object, got list"),
    (b'{"id": 1}', "missing 'cmd'"),
    (b'{"cmd": "reboot", "id": 7}', "unknown command 'reboot'"),
    (b'{"cmd": "set", "smoothing": 2.5}', "smoothing must be an integer, got float"),
    (b'{"cmd": "set", "min_score": "0.3"}', "min_score must be a number, got str"),
    (b'{"cmd": "set", "min_score": 1.5}', "min_score: Input should be less than or equal to 1"),
    (b'{"cmd": "set", "fps": 3}', "unknown setting 'fps'"),
    (b'{"cmd": "pause", "now": true}', "unexpected key(s) for 'pause': now"),
])
def test_errors_name_the_problem_and_echo_the_id(payload, message, caplog):
    caplog.set_level(logging.WARNING, logger="edgecam")
    with pytest.raises(CommandError) as info:
        parse_command(payload, MAX)
    assert message in str(info.value)
    outcome = handle_command(payload, FakeControl(), MAX)
    assert outcome.reply["error"] == str(info.value)
    if payload == b'{"cmd": "reboot", "id": 7}':
        assert outcome.reply["id"] == 7
    assert len([r for r in caplog.records if "Rejected MQTT command" in r.getMessage()]) == 1


# ----------------------------------------------------------------- through the broker
class _Commander:
    def __init__(self, collector, prefix):
        self.collector, self.prefix = collector, prefix
        self.sent = 0

    def send(self, payload, timeout=5.0):
        self.sent += 1
        self.collector.client.publish(f"{self.prefix}/cmd", payload, qos=1)
        return self.collector.wait_for(f"{self.prefix}/cmd/response", self.sent, timeout)[-1].json()


@pytest.fixture
def commander(broker, collector_factory, sink_factory):
    control = FakeControl()
    config = mqtt_config(broker, qos=1)
    prefix = config.topic_prefix
    collector = collector_factory(broker, [f"{prefix}/cmd/response", f"{prefix}/state", f"{prefix}/snapshot",
                                           f"{prefix}/status", f"{prefix}/result"])
    sink = sink_factory(config, control)
    collector.wait_payload(f"{prefix}/status", b"online")  # our SUBSCRIBE went out before this
    return _Commander(collector, prefix), control, sink


def test_each_command_acts_on_the_daemon_and_replies(commander):
    cmd, control, sink = commander
    state_topic = f"{cmd.prefix}/state"
    assert cmd.send(b'{"cmd": "pause", "id": "a1"}') == {"ok": True, "cmd": "pause", "id": "a1", "paused": True}
    assert control.paused and cmd.collector.messages(state_topic)[-1].json()["paused"] is True
    assert cmd.send(b'{"cmd": "resume", "id": 2}') == {"ok": True, "cmd": "resume", "id": 2, "paused": False}
    assert not control.paused

    reply = cmd.send(b'{"cmd":"set","id":"s","min_score":0.3,"policy":"on_change","max_fps":5,"smoothing":3}')
    wanted = {"min_score": 0.3, "policy": "on_change", "max_fps": 5.0, "smoothing": 3}
    assert control.calls[-1] == ("apply_settings", wanted)
    assert reply["ok"] and reply["id"] == "s" and reply["settings"] == control.settings
    calls = len(control.calls)
    reply = cmd.send(b'{"cmd": "set", "min_score": 3}')
    assert not reply["ok"] and "min_score" in reply["error"] and len(control.calls) == calls
    reply = cmd.send(b'{"cmd": "set", "max_fps": 999}')  # the daemon's own validation says no
    assert reply == {"ok": False, "cmd": "set", "error": "max_fps: 999 is more than the camera can deliver"}

    reply = cmd.send(b'{"cmd": "snapshot", "id": "snap"}')
    snap = cmd.collector.wait_for(f"{cmd.prefix}/snapshot")[0]
    assert snap.payload == control.snapshot and reply["bytes"] == len(control.snapshot)
    assert reply["topic"] == f"{cmd.prefix}/snapshot" and reply["id"] == "snap"
    control.snapshot = None
    reply = cmd.send(b'{"cmd": "snapshot"}')
    assert reply["ok"] is False and "no snapshot" in reply["error"]
    assert len(cmd.collector.messages(f"{cmd.prefix}/snapshot")) == 1

    before = len(cmd.collector.messages(state_topic))
    reply = cmd.send(b'{"cmd": "status"}')
    assert reply["ok"] and reply["state"] == control.state()
    assert len(cmd.collector.messages(state_topic)) == before + 1
    assert sink.connected and sink.counters()["errors"] == 0


def test_malformed_commands_through_the_broker_while_results_flow(commander, caplog):
    caplog.set_level(logging.WARNING, logger="edgecam")
    cmd, control, sink = commander
    rng = random.Random(4)
    payloads = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 80))) for _ in range(10)] + [
        b"\xc3\x28", b"A" * 5000, b'{"cmd":"halt"}', b"[]", b"null", b'"pause"', b"{", b'{"cmd": 1}',
        b'{"cmd": ["pause"]}', b'{"cmd": "pause", "id": true}', b'{"cmd": "pause", "id": 1.5}',
        b'{"cmd": "resume", "x": 1}', b'{"cmd": "set"}', b'{"cmd": "set", "min_score": "high"}',
        b'{"cmd": "set", "smoothing": 0}', b'{"cmd": "set", "policy": "never"}', b'{"cmd": "set", "fps": 2}',
        b'{"cmd": "set", "max_fps": NaN}', b"[" * 3000, b'{"cmd": "snapshot", "size": 2}' + b" " * 4100]
    stop, published = threading.Event(), []

    def stream():
        while not stop.is_set():
            sink.publish_result(make_result(len(published)))
            published.append(len(published))
            time.sleep(0.01)

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        replies = [cmd.send(p) for p in payloads]
    finally:
        stop.set()
        streamer.join()
    assert len(replies) == 30 and all(r["ok"] is False and r["error"] for r in replies)
    assert control.calls == [] and not control.paused
    rejected = [r.getMessage() for r in caplog.records if "Rejected MQTT command" in r.getMessage()]
    assert len(rejected) == 2, "30 rejects within the log interval: one line per kind, the rest counted"
    assert [line.split(")")[0] for line in rejected] == ["Rejected MQTT command (malformed",
                                                         "Rejected MQTT command (refused setting"]
    assert sink.counters()["commands"]["rejected"] == {"malformed": 26, "setting": 4}
    seqs = [m.json()["seq"] for m in cmd.collector.wait_for(f"{cmd.prefix}/result", len(published))]
    assert seqs == published and len(published) > 10  # results kept flowing, none lost
    assert sink.connected and sink.counters()["dropped"] == 0


@pytest.mark.parametrize("disabled_by", ["config", "no control"])
def test_commands_not_subscribed_when_disabled(broker, collector_factory, sink_factory, disabled_by):
    control = FakeControl()
    config = mqtt_config(broker, commands={"enabled": disabled_by != "config"})
    prefix = config.topic_prefix
    collector = collector_factory(broker, [f"{prefix}/cmd/response", f"{prefix}/status"])
    sink_factory(config, control if disabled_by == "config" else None)
    collector.wait_payload(f"{prefix}/status", b"online")
    collector.client.publish(f"{prefix}/cmd", b'{"cmd": "pause"}', qos=1)
    time.sleep(1.0)
    assert collector.messages(f"{prefix}/cmd/response") == [] and not control.paused


@pytest.mark.parametrize("payload, message", [
    (b'{"cmd": "set", "max_fps": 1e-300}', "max_fps must be 0 (unlimited) or at least 0.1"),
    (b'{"cmd": "set", "min_score": 1' + b"0" * 400 + b"}", "min_score must be a finite number"),
    (b'{"cmd": "set", "smoothing": 1' + b"0" * 400 + b"}", "smoothing: 10000000000000000000... is out of range"),
    (b'{"cmd": "set", "heartbeat_s": 1e999}', "heartbeat_s must be a finite number"),
])
def test_numbers_are_checked_for_range_and_finiteness_without_tracebacks(payload, message, caplog):
    caplog.set_level(logging.WARNING, logger="edgecam")
    outcome = handle_command(payload, FakeControl(), 8192)
    assert outcome.reply["ok"] is False and message in outcome.reply["error"], outcome.reply
    assert "internal error" not in outcome.reply["error"]
    assert all(r.exc_info is None for r in caplog.records), "no traceback for bad input"


def test_the_same_rules_hold_in_config_yaml() -> None:
    from edgecam.config import parse_config

    with pytest.raises(ConfigError, match="inference.max_fps: max_fps must be 0 .unlimited. or at least 0.1"):
        parse_config({"inference": {"max_fps": 1e-300}}, "config.yaml")
    with pytest.raises(ConfigError, match="publish.min_score"):
        parse_config({"publish": {"min_score": float("nan")}}, "config.yaml")


def test_retained_commands_are_ignored_with_one_log_line(broker, collector_factory, sink_factory, caplog):
    caplog.set_level(logging.WARNING, logger="edgecam")
    control = FakeControl()
    config = mqtt_config(broker)
    prefix = config.topic_prefix
    collector = collector_factory(broker, [f"{prefix}/cmd/response", f"{prefix}/status"])
    collector.client.publish(f"{prefix}/cmd", b'{"cmd": "pause"}', qos=1, retain=True).wait_for_publish(5)
    try:
        sink_factory(config, control)  # a fresh start finds the retained pause on its command topic
        collector.wait_payload(f"{prefix}/status", b"online")
        wait_until(lambda: any("retained command" in r.getMessage() for r in caplog.records), 10,
                   "the retained command to be reported")
        time.sleep(0.5)
        assert not control.paused and control.calls == []
        assert collector.messages(f"{prefix}/cmd/response") == []
        assert sum("retained command" in r.getMessage() for r in caplog.records) == 1
    finally:
        collector.client.publish(f"{prefix}/cmd", b"", qos=1, retain=True).wait_for_publish(5)
