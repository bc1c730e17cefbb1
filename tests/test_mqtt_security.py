"""Authentication and TLS against a real Mosquitto."""

from __future__ import annotations

import logging

import pytest

from edgecam.errors import ConfigError
from edgecam.publish.mqtt import MqttSink
from tests.support.mqtt import make_result, mqtt_config, wait_until

USER, PASSWORD = "edge", "s3cret-Pa55"


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_right_password_from_file_connects(broker_factory, collector_factory, sink_factory, tmp_path):
    broker = broker_factory(passwords={USER: PASSWORD})
    secret = tmp_path / "mqtt_password"
    secret.write_text(PASSWORD + "\n")
    config = mqtt_config(broker, username=USER, password_file=str(secret))
    collector = collector_factory(broker, [f"{config.topic_prefix}/#"], username=USER, password=PASSWORD)
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="authenticated connection")
    sink.publish_result(make_result(1))
    assert collector.wait_for(f"{config.topic_prefix}/result")[0].json()["seq"] == 1
    assert PASSWORD not in repr(sink)


def test_right_password_from_env_connects(broker_factory, sink_factory, monkeypatch):
    broker = broker_factory(passwords={USER: PASSWORD})
    monkeypatch.setenv("EDGECAM_TEST_MQTT_PW", PASSWORD)
    sink = sink_factory(mqtt_config(broker, username=USER, password_env="EDGECAM_TEST_MQTT_PW"))
    wait_until(lambda: sink.connected, what="authenticated connection")


def test_wrong_password_logs_a_clear_line_and_keeps_retrying(broker_factory, sink_factory, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="edgecam")
    broker = broker_factory(passwords={USER: PASSWORD})
    monkeypatch.setenv("EDGECAM_TEST_MQTT_PW", "wrong-password-xyz")
    config = mqtt_config(broker, username=USER, password_env="EDGECAM_TEST_MQTT_PW",
                         reconnect={"initial_s": 0.1, "max_s": 0.2})
    sink = sink_factory(config)
    wait_until(lambda: sink.counters()["connect_failures"] >= 3, what="several refused attempts")
    assert not sink.connected
    expected = f"MQTT connection refused by broker {broker.host}:{broker.port}: Not authorized; retrying"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings.count(expected) == 1, warnings  # repeated failures do not flood the log
    sink.publish_result(make_result(1))  # keeps queueing, no exception
    assert sink.counters()["queued"] == 1
    assert not any("wrong-password-xyz" in m for m in _messages(caplog))
    assert "wrong-password-xyz" not in repr(sink) and "wrong-password-xyz" not in repr(vars(sink))


def test_missing_password_sources_are_config_errors(tmp_path, monkeypatch):
    from tests.support.mqtt import Broker

    broker = Broker(tmp_path / "unused")
    monkeypatch.delenv("EDGECAM_TEST_NOPE", raising=False)
    with pytest.raises(ConfigError, match="EDGECAM_TEST_NOPE is not set"):
        MqttSink(mqtt_config(broker, username=USER, password_env="EDGECAM_TEST_NOPE"))
    with pytest.raises(ConfigError, match=r"mqtt.password_file: cannot read .*nope.txt"):
        MqttSink(mqtt_config(broker, username=USER, password_file=str(tmp_path / "nope.txt")))
    with pytest.raises(ConfigError, match=r"mqtt.tls.ca_file: file not found"):
        MqttSink(mqtt_config(broker, tls={"enabled": True, "ca_file": str(tmp_path / "ca.pem")}))


def test_tls_with_the_right_ca_verifies_and_connects(broker_factory, collector_factory, sink_factory, tls_files):
    broker = broker_factory(tls=tls_files)
    config = mqtt_config(broker, tls={"enabled": True, "ca_file": str(tls_files.ca_cert)})
    collector = collector_factory(broker, [f"{config.topic_prefix}/result"], ca_cert=tls_files.ca_cert)
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="TLS connection")
    sink.publish_result(make_result(5))
    assert collector.wait_for(f"{config.topic_prefix}/result")[0].json()["seq"] == 5


def test_tls_with_a_wrong_ca_fails_with_a_clear_message(broker_factory, sink_factory, tls_files, caplog):
    caplog.set_level(logging.WARNING, logger="edgecam")
    broker = broker_factory(tls=tls_files)
    config = mqtt_config(broker, tls={"enabled": True, "ca_file": str(tls_files.other_ca_cert)})
    sink = sink_factory(config)
    wait_until(lambda: sink.counters()["connect_failures"] >= 2, what="failed TLS attempts")
    assert not sink.connected
    lines = [m for m in _messages(caplog) if "TLS certificate verification failed" in m]
    assert lines and lines[0].startswith(f"MQTT: cannot connect to broker {broker.host}:{broker.port}: ")
    # OpenSSL's own reason follows, e.g. "self-signed certificate in certificate chain"
    assert "certificate" in lines[0].split("verification failed: ", 1)[1]
    assert not any("Client is not connected" in m for m in _messages(caplog))  # paho noise filtered


def test_tls_insecure_skips_verification_with_a_loud_warning(broker_factory, sink_factory, tls_files, caplog):
    caplog.set_level(logging.WARNING, logger="edgecam")
    broker = broker_factory(tls=tls_files)
    config = mqtt_config(broker, tls={"enabled": True, "ca_file": str(tls_files.other_ca_cert), "insecure": True})
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="insecure TLS connection")
    assert any("verification is DISABLED" in m for m in _messages(caplog))
