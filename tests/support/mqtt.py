"""MQTT fixtures and helpers: a REAL Mosquitto per test on a free loopback port
(``edgecam.bench.broker``), subscribers that record (``collector``), sinks, configs aimed
at the broker, synthetic results, and ``wait_until``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from edgecam.bench.broker import Broker, TlsFiles, free_port, make_tls_files
from edgecam.config import Config, parse_config
from edgecam.model.types import Label
from edgecam.result import Result
from tests.support.collector import Collector, Message

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "edgecam" / "schemas" / "result.schema.json"

__all__ = ["Broker", "Collector", "Message", "TlsFiles", "free_port", "make_result", "mqtt_config", "wait_until"]


def make_result(seq: int, label: str = "tabby", score: float = 0.8, *, device: str = "testcam",
                mono: Optional[float] = None) -> Result:
    """A synthetic Result shaped like the classifier's (Top-3, scores summing below 1)."""
    t = time.monotonic() if mono is None else mono
    rest = (1.0 - score) / 2
    top = (Label(label, 281, score), Label("tiger cat", 282, rest * 0.8), Label("lynx", 287, rest * 0.2))
    return Result(device=device, source="demo", seq=seq, captured_mono=t, captured_wall=time.time(),
                  inference_start=t + 0.002, inference_end=t + 0.010, top=top, model_name="resnet18_160_int8",
                  model_precision="int8", model_input_size=160, frame_width=640, frame_height=480,
                  handed_mono=t + 0.011)


def mqtt_config(broker: Broker, device_id: Optional[str] = None, **mqtt_overrides: Any) -> Config:
    """A Config aimed at ``broker`` with short keepalive / reconnect delays for fast tests."""
    section: dict[str, Any] = {"host": broker.host, "port": broker.port, "keepalive_s": 5,
                               "reconnect": {"initial_s": 0.2, "max_s": 1.0}}
    for key, value in mqtt_overrides.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            section[key] = {**section[key], **value}
        else:
            section[key] = value
    return parse_config({"device_id": device_id or f"cam-{uuid.uuid4().hex[:6]}", "mqtt": section}, "<test>")


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Any]:
    """``broker_factory(**kwargs)`` -> a started Broker; all stopped at teardown."""
    brokers: list[Broker] = []

    def factory(**kwargs: Any) -> Broker:
        b = Broker(tmp_path / f"broker{len(brokers)}", **kwargs)
        brokers.append(b)
        return b.start()

    yield factory
    for b in brokers:
        b.stop()


@pytest.fixture
def broker(broker_factory: Any) -> Broker:
    return broker_factory()


@pytest.fixture
def collector_factory() -> Iterator[Any]:
    collectors: list[Collector] = []

    def factory(broker: Broker, topics: list[str], **kwargs: Any) -> Collector:
        c = Collector(broker, topics, **kwargs)
        collectors.append(c)
        return c

    yield factory
    for c in collectors:
        c.close()


@pytest.fixture
def sink_factory() -> Iterator[Any]:
    """``sink_factory(config, control=None, **kwargs)`` -> a started MqttSink; stopped at teardown."""
    from edgecam.publish.mqtt import MqttSink

    sinks: list[MqttSink] = []

    def factory(config: Config, control: Any = None, start: bool = True, **kwargs: Any) -> MqttSink:
        sink = MqttSink(config, control, **kwargs)
        sinks.append(sink)
        if start:
            sink.start()
        return sink

    yield factory
    for sink in sinks:
        sink.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def result_validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
