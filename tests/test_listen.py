"""`edgecam listen` as a subprocess against a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from edgecam.publish.mqtt.listen import format_line, format_state
from tests.support.mqtt import Broker, free_port, make_result, mqtt_config, wait_until


def _listen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "edgecam", "listen", "--host", "127.0.0.1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_listening(proc: subprocess.Popen[str]) -> list[str]:
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if "listening on" in line:
            return seen
    raise AssertionError(f"listener never subscribed: {seen}")


def _feed_until_exit(proc, sink, device, timeout=20.0):
    """Publish results until the listener exits (it may miss the first ones while subscribing)."""
    stop = threading.Event()

    def feed():
        seq = 0
        while not stop.is_set():
            sink.publish_result(make_result(seq, device=device))
            seq += 1
            time.sleep(0.05)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        feeder.join()
    return out, err


def test_listen_count_json_prints_valid_results(broker, sink_factory, result_validator):
    config = mqtt_config(broker)
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="sink connected")
    proc = _listen("--port", str(broker.port), "--count", "3", "--json", "--timeout", "20")
    _wait_listening(proc)
    out, err = _feed_until_exit(proc, sink, config.device_id)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    payloads = [json.loads(line) for line in lines]
    for payload in payloads:
        result_validator.validate(payload)
        assert payload["device"] == config.device_id
    seqs = [p["seq"] for p in payloads]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert "Traceback" not in err


def test_listen_table_for_one_device(broker, sink_factory):
    config = mqtt_config(broker)
    sink = sink_factory(config)
    other_config = mqtt_config(broker)
    other = sink_factory(other_config)  # another device, filtered out by --device
    wait_until(lambda: sink.connected and other.connected, what="sinks connected")
    for seq in range(5):
        other.publish_result(make_result(seq, "goldfish", device=other_config.device_id))
    proc = _listen("--port", str(broker.port), "--device", config.device_id, "--count", "2", "--timeout", "20")
    _wait_listening(proc)
    out, err = _feed_until_exit(proc, sink, config.device_id)
    assert proc.returncode == 0, err
    rows = [line for line in out.splitlines() if line.startswith(config.device_id)]
    assert len(rows) == 2 and all("tabby" in r and "0.800" in r and "ms" in r for r in rows)
    assert f"edgecam/{config.device_id}/status: online" in out
    assert "goldfish" not in out


def test_format_line_shows_top3_and_latency():
    line = format_line(make_result(42, "tabby", 0.8, device="cam1").to_payload())
    assert line.startswith("cam1") and "#42" in line
    assert "tabby 0.80 | tiger cat 0.08 | lynx 0.02" in line
    assert line.endswith("11.0/8.0 ms")  # total = wait 2 + inference 8 + publish 1


def test_format_state_shows_the_change_and_when_it_happened():
    from tests.test_mqtt_outbox import region_state

    line = format_state(region_state("cam1", 1))
    assert line.split()[:3] == ["cam1", "garage", "door"]
    assert line.endswith("open -> closed (0.900) since 2026-09-21T14:14:20.000Z")
    first = format_state({**region_state("cam1", 0), "previous": None})
    assert "None" not in first and " - -> " in first


def test_listen_unreachable_broker_is_a_clear_message(tmp_path):
    port = free_port()
    proc = _listen("--port", str(port), "--count", "1", "--timeout", "2")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert f"cannot connect to MQTT broker 127.0.0.1:{port}: Connection refused; retrying" in err
    assert "timed out after 2 s (0 of 1 results)" in err
    assert "Traceback" not in err and out == ""


def test_listen_auth_errors(broker_factory, monkeypatch):
    broker: Broker = broker_factory(passwords={"viewer": "right"})
    proc = _listen("--port", str(broker.port), "--username", "viewer", "--password-env", "EDGECAM_NO_SUCH_VAR")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "environment variable EDGECAM_NO_SUCH_VAR is not set" in err
    monkeypatch.setenv("EDGECAM_TEST_LISTEN_PW", "wrong")
    proc = _listen("--port", str(broker.port), "--username", "viewer", "--password-env", "EDGECAM_TEST_LISTEN_PW",
                   "--timeout", "10")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert f"connection refused by broker 127.0.0.1:{broker.port}: Not authorized" in err
    assert "Traceback" not in err


def _read_lines(proc: subprocess.Popen[str], out: list[str]) -> threading.Thread:
    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line.rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def test_two_shared_consumers_get_every_message_exactly_once(broker, sink_factory):
    from tests.test_mqtt_outbox import region_state

    config = mqtt_config(broker, qos=1)
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="sink connected")
    consumers = [_listen("--port", str(broker.port), "--share", "workers", "--states", "--json")
                 for _ in range(2)]
    lines: list[list[str]] = [[], []]
    try:
        for proc in consumers:
            _wait_listening(proc)
        readers = [_read_lines(proc, out) for proc, out in zip(consumers, lines)]
        states = [region_state(config.device_id, i) for i in range(10)]
        for seq in range(300):
            sink.publish_result(make_result(seq, device=config.device_id))
            if seq % 30 == 0:
                sink.publish_region_state(states[seq // 30])
        wait_until(lambda: len(lines[0]) + len(lines[1]) >= 310, timeout=60, what="310 lines")
        time.sleep(0.5)  # a duplicate would be here by now
    finally:
        for proc in consumers:
            proc.terminate()
            proc.wait(timeout=10)
    for reader in readers:
        reader.join(timeout=5)
    got = [[json.loads(line) for line in out] for out in lines]
    seqs = sorted(p["seq"] for share in got for p in share if "seq" in p)
    assert seqs == list(range(300))  # every result, each once
    received_states = [p for share in got for p in share if "since" in p]
    assert sorted(received_states, key=lambda p: p["since"]) == states
    assert all(sum("seq" in p for p in share) > 50 for share in got), [len(s) for s in got]  # the load is split


def test_share_needs_mqtt5_and_a_plain_group_name(broker):
    for args, message in ((["--share", "a/b"], "--share: a group name is non-empty"),
                          (["--share", "g", "--protocol", "3.1.1"], "need MQTT 5"),
                          (["--session-expiry", "60"], "--session-expiry needs a fixed --client-id")):
        proc = _listen("--port", str(broker.port), *args)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 2 and message in err, err


def _result_payload(seq: int, camera: str, region: str, label: str = "tabby", device: str = "dev") -> bytes:
    payload = make_result(seq, label, device=device).to_payload()
    return json.dumps({**payload, "camera": camera, "region": region}).encode()


def _publisher(broker, collector_factory):
    return collector_factory(broker, ["edgecam/unused"]).client  # a connected plain paho client


def test_listen_escapes_control_characters_from_payloads(broker, collector_factory):
    client = _publisher(broker, collector_factory)
    evil = "\x1b[2J\x1b]0;pwned\x07\u202eevil\r"
    proc = _listen("--port", str(broker.port), "--count", "2", "--timeout", "20", "--states")
    _wait_listening(proc)
    client.publish("edgecam/dev/status", b"online\x1b[?1049h", qos=1)
    state = {"device": "dev", "camera": "garage", "region": "door", "previous": evil, "label": "open",
             "score": 0.9, "since": "2026\x1b[1A"}
    client.publish("edgecam/dev/garage/door/state", json.dumps(state).encode(), qos=1)
    payload = json.loads(_result_payload(1, "garage", "door", label=evil, device="dev\x1b[31m"))
    client.publish("edgecam/dev/garage/door/result", json.dumps(payload).encode(), qos=1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    for text in (out, err):
        assert not any(ch in text for ch in "\x1b\x07\r\u202e"), repr(text)
    status, _, state_row, result_row = out.splitlines()
    assert status == "edgecam/dev/status: online\\x1b[?1049h"
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\u202eevil\\x0d -> open" in state_row and "2026\\x1b[1A" in state_row
    assert result_row.startswith("dev\\x1b[31m") and "\\x1b[2J\\x1b]0;pwned" in result_row


def test_listen_json_lines_escape_control_characters_too(broker, collector_factory):
    client = _publisher(broker, collector_factory)
    proc = _listen("--port", str(broker.port), "--count", "1", "--timeout", "20", "--json")
    _wait_listening(proc)
    client.publish("edgecam/dev/garage/door/result", _result_payload(1, "garage", "door", label="a\x1b[2J\x7fb"), qos=1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "\x1b" not in out and "\x7f" not in out
    assert json.loads(out)["top"][0]["label"] == "a\x1b[2J\x7fb"


def test_listen_with_two_cameras_shows_and_filters_camera_and_region(broker, collector_factory):
    client = _publisher(broker, collector_factory)
    sources = [("garage", "door"), ("garage", "window"), ("porch", "gate")]

    def run(*filters: str, count: int) -> list[str]:
        proc = _listen("--port", str(broker.port), "--count", str(count), "--timeout", "20", "--states", *filters)
        _wait_listening(proc)
        for seq in range(6):
            for camera, region in sources:
                client.publish(f"edgecam/dev/{camera}/{region}/result", _result_payload(seq, camera, region), qos=1)
        state = {"device": "dev", "camera": "porch", "region": "gate", "previous": None, "label": "open",
                 "score": 0.9, "since": "2026-01-01T00:00:00.000Z"}
        client.publish("edgecam/dev/porch/gate/state", json.dumps(state).encode(), qos=1)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["device", "camera", "region"]
        return [line.split()[:3] for line in lines[1:]]

    every = run(count=18)
    assert {tuple(row) for row in every} == {("dev", c, r) for c, r in sources}
    assert all(row == ["dev", "garage", "door"] for row in run("--camera", "garage", "--region", "door", count=4))
    porch = run("--camera", "porch", count=7)
    assert all(row == ["dev", "porch", "gate"] for row in porch) and len(porch) == 7
    window = run("--region", "window", count=3)
    assert all(row == ["dev", "garage", "window"] for row in window)


def test_listen_refuses_filters_that_are_not_names(broker):
    for args in (["--camera", "a/b"], ["--region", "+"], ["--camera", "door\n"]):
        proc = _listen("--port", str(broker.port), *args)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 2 and "is not a" in err, err


def test_format_line_has_camera_and_region_columns_and_no_python_reprs():
    payload = make_result(7, "tabby", 0.8, device="cam1").to_payload()
    row = format_line({**payload, "camera": "garage", "region": "door"})
    assert row.split()[:4] == ["cam1", "garage", "door", "#7"]
    bare = format_line({"device": None, "seq": 3, "top": [{"label": None, "score": 0.5}]})
    assert "None" not in bare and bare.split()[:3] == ["-", "-", "-"]
