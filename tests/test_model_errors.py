"""Bad model files: one clear ModelError (library) or one stderr line + exit 2 (CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgecam.errors import ModelError
from edgecam.model.classifier import Classifier
from edgecam.model.metadata import info_to_props
from edgecam.model.types import ModelInfo

LABELS = tuple(f"class{i}" for i in range(4))


def _info(size: int = 32) -> ModelInfo:
    return ModelInfo(
        name="tiny", arch="tiny", precision="fp32", input_size=size, labels=LABELS, trained=False,
        weights="random", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), color_order="RGB",
        layout="NCHW_float",
    )


def tiny_model(path: Path, input_shape: list, props: dict | None, classes: int = 4) -> Path:
    """A real ONNX graph: input -> ReduceMean to (1, C) -> MatMul to ``classes`` logits."""
    rank = len(input_shape)
    if rank > 2:
        pool = helper.make_node("ReduceMean", ["input"], ["pooled"], keepdims=0, axes=list(range(2, rank)))
    else:
        pool = helper.make_node("Identity", ["input"], ["pooled"])
    channels = input_shape[1]
    weight = helper.make_tensor("w", TensorProto.FLOAT, [channels, classes],
                                np.ones(channels * classes, np.float32))
    nodes = [pool, helper.make_node("MatMul", ["pooled", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (props or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _bad_files(tmp: Path, real_int8: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, regex the error must match)."""
    data = real_int8.read_bytes()
    (tmp / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp / "random.onnx").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    (tmp / "text.onnx").write_text("this is not a model\n")
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "a_directory.onnx").mkdir()
    props = info_to_props(_info())
    foreign = {**props, "edgecam_format_version": "99"}
    broken = {**props, "labels": "[not json"}
    return {
        "missing": (tmp / "missing.onnx", r"missing\.onnx does not exist"),
        "directory": (tmp / "a_directory.onnx", r"a_directory\.onnx is a directory"),
        "empty": (tmp / "empty.onnx", r"empty\.onnx: model file is empty"),
        "truncated": (tmp / "truncated.onnx", r"truncated\.onnx: not a valid ONNX model"),
        "random": (tmp / "random.onnx", r"random\.onnx: not a valid ONNX model"),
        "text": (tmp / "text.onnx", r"text\.onnx: not a valid ONNX model"),
        "rank2": (tiny_model(tmp / "rank2.onnx", [1, 3], props), r"rank2\.onnx: input 'input' has rank 2"),
        "size": (tiny_model(tmp / "size.onnx", [1, 3, 64, 64], props),
                     r"size\.onnx: input 'input' has shape \[1, 3, 64, 64\]"),
        "no_meta": (tiny_model(tmp / "no_meta.onnx", [1, 3, 32, 32], None), r"no_meta\.onnx: no edgecam metadata"),
        "foreign": (tiny_model(tmp / "foreign.onnx", [1, 3, 32, 32], foreign),
                     r"foreign\.onnx: edgecam model format version '99'"),
        "bad_json": (tiny_model(tmp / "bad_json.onnx", [1, 3, 32, 32], broken),
                     r"bad_json\.onnx: invalid edgecam metadata: labels"),
        "classes": (tiny_model(tmp / "classes.onnx", [1, 3, 32, 32], props, classes=7),
                     r"classes\.onnx: model outputs 7 values .* 4 labels"),
    }


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, resnet_random_models):
    return _bad_files(tmp_path_factory.mktemp("bad-models"), resnet_random_models.int8)


CASES = ["missing", "directory", "empty", "truncated", "random", "text", "rank2", "size",
         "no_meta", "foreign", "bad_json", "classes"]


@pytest.mark.parametrize("case", CASES)
def test_bad_model_raises_model_error(bad_files, case):
    path, pattern = bad_files[case]
    with pytest.raises(ModelError, match=pattern) as caught:
        Classifier(path)
    assert "\n" not in str(caught.value)


def test_tiny_valid_model_loads(tmp_path):
    """The helper graph itself is fine when shape and metadata agree (the cases above are not flukes)."""
    clf = Classifier(tiny_model(tmp_path / "ok.onnx", [1, 3, 32, 32], info_to_props(_info())))
    assert clf.info.labels == LABELS and clf.probabilities(np.zeros((50, 40, 3), np.uint8)).shape == (4,)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgecam", *args], capture_output=True, text=True, timeout=240,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("case", ["missing", "truncated", "text", "rank2", "no_meta"])
def test_classify_cli_bad_model_exit_2(bad_files, real_photo_file, case):
    path, pattern = bad_files[case]
    result = run_cli("classify", "--model", str(path), str(real_photo_file))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgecam: error: "), result.stderr
    assert "Traceback" not in result.stderr
    import re

    assert re.search(pattern, lines[0])


@pytest.fixture(scope="module")
def real_photo_file(tmp_path_factory, real_photos) -> Path:
    import cv2

    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    cv2.imwrite(str(path), dict(real_photos)["chelsea"])
    return path
