"""The MQTT sink is made of small classes with explicit collaborators: no mixins (a class that
only works as part of another), no import circle (the sink and its worker imported each other)."""

from __future__ import annotations

import ast

from edgecam.publish.mqtt.sink import MqttSink
from edgecam.publish.sink import Sink
from tests.test_layering import GRAPH, MODULES, strongly_connected


def test_no_import_circle_in_publish() -> None:
    publish = {m: {t for t in targets if t.startswith("edgecam.publish")}
               for m, targets in GRAPH.items() if m.startswith("edgecam.publish")}
    assert strongly_connected(publish) == []


def test_the_sink_is_one_class_and_its_parts_stand_alone() -> None:
    assert MqttSink.__bases__ == (Sink,)
    for module, path in MODULES.items():
        if not module.startswith("edgecam.publish"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                assert not node.name.endswith("Mixin"), f"{module}.{node.name}"
            if isinstance(node, ast.FunctionDef) and node.args.args and node.args.args[0].arg == "self":
                annotation = node.args.args[0].annotation
                assert annotation is None, f"{module}.{node.name}: a self-type annotation (a mixin's method)"
