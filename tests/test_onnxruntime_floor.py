"""The onnxruntime floor in requirements.txt (>=1.24.3): a model file may not make onnxruntime read
files outside the model's folder through ONNX external data (``location: ../../etc/...``).
onnxruntime 1.23.2 loads such a model and hands the outside file's bytes to the graph as weights;
1.24.1 refuses it (microsoft/onnxruntime PR #26776). A model uploaded to the web app or copied
from elsewhere must not be a way to read the daemon's secrets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgecam.errors import ModelError
from edgecam.model.classifier import Classifier

SECRET = np.array([3.0, 1.0, 4.0, 1.0], np.float32)


def escaping_model(tmp_path: Path) -> Path:
    """models/model.onnx whose weight ``w`` lives in ../outside/secret.bin."""
    (tmp_path / "outside").mkdir()
    SECRET.tofile(tmp_path / "outside" / "secret.bin")
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "../outside/secret.bin"), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "escape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path = tmp_path / "models" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(model.SerializeToString())
    return path


def test_onnxruntime_refuses_external_data_outside_the_model_folder(tmp_path: Path) -> None:
    path = escaping_model(tmp_path)
    with pytest.raises(Exception, match="External data path") as info:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert "escapes" in str(info.value) and "../outside/secret.bin" in str(info.value)


def test_the_same_model_inside_its_folder_loads(tmp_path: Path) -> None:
    """The control: the graph is valid, only the location is refused."""
    path = escaping_model(tmp_path)
    (tmp_path / "outside" / "secret.bin").rename(path.parent / "secret.bin")
    proto = onnx.load(str(path), load_external_data=False)
    proto.graph.initializer[0].external_data[0].value = "secret.bin"
    path.write_bytes(proto.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": np.zeros(4, np.float32)})[0], SECRET)


def test_edgecam_reports_the_refusal_as_a_model_error(tmp_path: Path) -> None:
    path = escaping_model(tmp_path)
    with pytest.raises(ModelError, match=r"model.onnx: not a valid ONNX model \(.*External data path"):
        Classifier(path, threads=1)
