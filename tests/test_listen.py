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
    assert line.startswith("cam1") and "garage/door" in line
    assert line.endswith("open -> closed (0.900) since 2026-09-21T14:14:20.000Z")


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
