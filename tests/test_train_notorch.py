"""`edgecam train` in a virtualenv that has only requirements-train.txt: no torch at all.

The virtualenv is made once (pip install -r requirements-train.txt, then edgecam with
--no-deps, editable) and kept in .cache/notorch-venv-<hash of the requirements and the
Python version>; it takes a minute the first time. The backbone comes from the model
`edgecam model build` writes (the effnet_models fixture, built where torch is), as
it would be copied to a Pi; the dataset is the tests' scene (crops of a real photo).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecam.bench.train_data import scene_dataset, scene_sample
from edgecam.model.classifier import Classifier

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements-train.txt"
FLOOR = 0.85  # see tests/test_train.py


def _key() -> str:
    text = REQUIREMENTS.read_text() + (ROOT / "requirements.txt").read_text() + sys.version
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _run(*cmd: str | Path, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, check=False, **kwargs)


@pytest.fixture(scope="session")
def notorch_venv() -> Path:
    venv = ROOT / ".cache" / f"notorch-venv-{_key()}"
    ready, checkout = venv / "edgecam-ready", venv / "edgecam-checkout"
    if not ready.exists():  # absent, or a build that was interrupted
        shutil.rmtree(venv, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)  # not this venv, which sees torch
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True)
        ready.write_text(_key())
    if not checkout.exists() or checkout.read_text() != str(ROOT):
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--no-deps", "-e", str(ROOT)], check=True)
        checkout.write_text(str(ROOT))
    return venv


def test_the_venv_has_no_torch(notorch_venv):
    probe = _run(notorch_venv / "bin" / "python", "-c", "import torch")
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr
    listed = _run(notorch_venv / "bin" / "python", "-m", "pip", "list", "--format=json")
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"onnx", "onnxruntime", "numpy", "opencv-python-headless"} <= names
    assert not names & {"torch", "torchvision", "sympy", "scikit-image"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return scene_dataset(tmp_path_factory.mktemp("notorch") / "feeder", per_class=30, seed=0)


def _train(venv: Path, data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    events = out.parent / f"{out.name}-events.jsonl"
    return _run(venv / "bin" / "edgecam", "train", data, "--out", out, "--threads", "2", "--views", "2",
                "--calib-count", "32", "--progress-json", events, *extra, timeout=600)


def _check_model(int8: Path, events: Path) -> dict:
    info = Classifier(int8).info
    training = info.metrics["training"]
    assert info.labels == ("cat", "empty") and training["trainer"] == "numpy (no torch)"
    assert info.metrics["accuracy"]["int8"] >= FLOOR and info.metrics["accuracy"]["fp32"] >= FLOOR, info.metrics
    crops = [scene_sample(present, np.random.default_rng(77)) for present in [True, False] * 10]
    right = (Classifier(int8).probabilities_batch(crops).argmax(1) == np.array([0, 1] * 10)).mean()
    assert right >= FLOOR, right
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert kinds[0] == "start" and kinds[-1] == "done" and "dataset" in kinds and "epoch" in kinds
    return training


def test_train_without_torch_from_the_fp32_model(notorch_venv, scene, effnet_models, tmp_path):
    out = tmp_path / "models"
    result = _train(notorch_venv, scene, out, "--backbone", str(effnet_models.fp32))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    training = _check_model(out / "feeder_int8.onnx", tmp_path / "models-events.jsonl")
    assert training["backbone"].startswith("efficientnet_lite0_160_fp32.onnx (FP32")
    print(f"no torch: {training['seconds']} s, stages {training['stages_s']}")


def test_train_without_torch_from_the_int8_model_the_daemon_runs(notorch_venv, scene, effnet_models, tmp_path):
    """A device that keeps only its INT8 file: found in --out by its name, dequantized."""
    out = tmp_path / "models"
    out.mkdir()
    shutil.copy(effnet_models.int8, out / effnet_models.int8.name)
    result = _train(notorch_venv, scene, out)
    assert result.returncode == 0, result.stderr[-3000:]
    training = _check_model(out / "feeder_int8.onnx", tmp_path / "models-events.jsonl")
    assert training["backbone"].startswith("efficientnet_lite0_160_int8.onnx (INT8, dequantized")


def test_without_torch_or_backbone_the_error_names_the_file(notorch_venv, scene, tmp_path):
    result = _train(notorch_venv, scene, tmp_path / "empty")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgecam: error: no backbone: training without torch cuts it from a model built "
                           "by `edgecam model build --arch efficientnet_lite0 --size 160`"), last
    assert "efficientnet_lite0_160_fp32.onnx" in last and "--backbone FILE" in last
    finetune = _run(notorch_venv / "bin" / "edgecam", "train", scene, "--finetune", "--out", tmp_path / "x")
    assert finetune.returncode != 0 and "torch" in finetune.stderr
