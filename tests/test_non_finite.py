"""Numbers are finite wherever a model's metadata or output meets JSON: NaN normalization
is refused at load naming the key, non-finite outputs are a ModelError (a failed
classification the inference thread counts), and no payload encoder ever writes NaN
(standard JSON parsers reject it, and the web page then showed "no connection")."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgecam.errors import ModelError
from edgecam.model.classifier import Classifier
from edgecam.model.metadata import info_from_props, info_to_props
from edgecam.model.types import Label
from edgecam.publish.mqtt.commands import encode_reply
from edgecam.result import encode_json
from tests.support.mqtt import make_result, mqtt_config, wait_until
from tests.test_model_errors import _info, tiny_model


def strict_json(data: bytes) -> Any:
    """What a standard JSON parser (a browser's JSON.parse, Home Assistant) accepts."""
    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")
    return json.loads(data, parse_constant=refuse)


@pytest.mark.parametrize("key, value", [
    ("mean", "[NaN, 0.5, 0.5]"),
    ("mean", "[1e999, 0.5, 0.5]"),  # Python reads this as infinity
    ("std", "[0.25, Infinity, 0.25]"),
    ("agreement", '{"top1": NaN}'),
    ("metrics", '{"val": {"accuracy": -Infinity}}'),
])
def test_non_finite_metadata_is_refused_at_load_naming_the_key(tmp_path: Path, key: str, value: str) -> None:
    props = {**info_to_props(_info()), key: value}
    with pytest.raises(ModelError, match=rf"bad\.onnx: invalid edgecam metadata: {key} .*finite"):
        info_from_props(props, "bad.onnx")
    path = tiny_model(tmp_path / "bad.onnx", [1, 3, 32, 32], props)
    with pytest.raises(ModelError, match=rf"bad\.onnx: invalid edgecam metadata: {key} "):
        Classifier(path)


def unary_model(path: Path, ops: list[tuple[str, float]]) -> Path:
    """input -> ReduceMean over H, W -> ops (("Add", c), ("Log", 0), ("Mul", c), ("Exp", 0)) -> MatMul.
    Finite on the all-zero tensor the load-time warm-up runs; not on some real frames."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["x0"], keepdims=0, axes=[2, 3])]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [3, 4], np.ones(12, np.float32))]
    for i, (op, constant) in enumerate(ops):
        if op in ("Add", "Mul"):
            inits.append(helper.make_tensor(f"c{i}", TensorProto.FLOAT, [], [constant]))
            nodes.append(helper.make_node(op, [f"x{i}", f"c{i}"], [f"x{i + 1}"]))
        else:
            nodes.append(helper.make_node(op, [f"x{i}"], [f"x{i + 1}"]))
    nodes.append(helper.make_node("MatMul", [f"x{len(ops)}", "w"], ["logits"]))
    graph = helper.make_graph(nodes, "unary",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in info_to_props(_info()).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("ops, frame_value, what", [
    ([("Add", 1.0), ("Log", 0.0)], 0, "NaN"),  # a dark frame: log of a negative number
    ([("Mul", 100.0), ("Exp", 0.0)], 255, "infinity"),  # a bright frame: exp(200) overflows float32
])
def test_non_finite_outputs_are_a_model_error(tmp_path: Path, ops: list, frame_value: int, what: str) -> None:
    classifier = Classifier(unary_model(tmp_path / "m.onnx", ops))  # the warm-up on zeros passes
    grey = np.full((48, 64, 3), 128, np.uint8)
    assert np.isfinite(classifier.probabilities(grey)).all()
    frame = np.full((48, 64, 3), frame_value, np.uint8)
    for classify in (lambda: classifier.classify(frame), lambda: classifier.probabilities_batch([grey, frame])):
        with pytest.raises(ModelError, match=r"m\.onnx: the model gave non-finite outputs \(NaN or infinity\)"):
            classify()


NAN, INF = float("nan"), float("inf")


def test_encoders_write_strict_json() -> None:
    state = {"score": NAN, "nested": [{"x": INF}, -INF], "ok": 1.5}
    assert strict_json(encode_json(state)) == {"score": None, "nested": [{"x": None}, None], "ok": 1.5}
    assert strict_json(encode_reply({"ok": True, "value": NAN})) == {"ok": True, "value": None}


def test_the_mqtt_sink_never_publishes_nan(broker, collector_factory, sink_factory) -> None:
    config = mqtt_config(broker, qos=1)
    prefix = config.topic_prefix
    topics = [f"{prefix}/state", f"{prefix}/result", f"{prefix}/stats", f"{prefix}/cam/door/state"]
    collector = collector_factory(broker, topics)
    sink = sink_factory(config)
    wait_until(lambda: sink.connected, what="sink connected")
    result = dataclasses.replace(make_result(1), top=(Label("tabby", 281, NAN), Label("lynx", 287, 0.1)))
    sink.publish_result(result)
    sink.publish_state({"device": "x", "fps": NAN})
    sink.publish_stats({"fps": INF})
    sink.publish_region_state({"camera": "cam", "region": "door", "label": "open", "score": NAN})
    for topic in topics:
        message = collector.wait_for(topic, 1)[-1]
        parsed = strict_json(message.payload)
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(parsed)), topic
    assert strict_json(collector.messages(f"{prefix}/result")[-1].payload)["top"][0]["score"] is None


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [leaf for value in obj.values() for leaf in _leaves(value)]
    if isinstance(obj, list):
        return [leaf for value in obj for leaf in _leaves(value)]
    return [obj]


def test_the_stdout_sink_never_prints_nan() -> None:
    import io

    from edgecam.publish.stdout import StdoutSink

    out = io.StringIO()
    StdoutSink(out).publish_result(dataclasses.replace(make_result(1), top=(Label("tabby", 281, NAN),)))
    assert strict_json(out.getvalue().encode())["top"][0]["score"] is None
