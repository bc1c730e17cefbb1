"""An unset model.path follows what `edgecam model build --arch auto --out models` wrote.

Offline, that build makes EfficientNet-Lite0 (ResNet-18's ImageNet weights cannot be downloaded),
while the default model.path named ResNet-18: `edgecam run` then failed, advising the very build
that had just run. The models here are real ones from the project's build code; the offline
build itself is tested in test_model_cli.py (test_fallback_builds_effnet_when_...).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgecam.config import DEFAULT_MODEL_PATH, OFFLINE_MODEL_PATH, apply_overrides, load_config, resolve_default_model

BUILD = "edgecam model build --arch auto --out models"


def test_unset_path_picks_what_the_auto_build_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    effnet_models) -> None:
    monkeypatch.chdir(tmp_path)
    config, note = resolve_default_model(load_config(None))
    assert config.model.path == DEFAULT_MODEL_PATH == "models/resnet18_160_int8.onnx"
    assert note == f"model.path not set: {DEFAULT_MODEL_PATH} (no model built yet: `{BUILD}`)"

    (tmp_path / "models").mkdir()
    shutil.copy(effnet_models.int8, tmp_path / OFFLINE_MODEL_PATH)
    config, note = resolve_default_model(load_config(None))
    assert config.model.path == OFFLINE_MODEL_PATH == "models/efficientnet_lite0_160_int8.onnx"
    assert note == (f"model.path not set and {DEFAULT_MODEL_PATH} absent: using {OFFLINE_MODEL_PATH}, the model "
                    f"`{BUILD}` builds when ResNet-18's ImageNet weights cannot be downloaded")
    assert config.model.threads == 2  # the rest untouched

    (tmp_path / DEFAULT_MODEL_PATH).write_bytes(b"")  # online, --arch auto builds ResNet-18: it wins
    config, note = resolve_default_model(load_config(None))
    assert config.model.path == DEFAULT_MODEL_PATH
    assert note == f"model.path not set: using {DEFAULT_MODEL_PATH}, the model `{BUILD}` builds"


def test_a_path_that_is_set_is_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             effnet_models) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    shutil.copy(effnet_models.int8, tmp_path / OFFLINE_MODEL_PATH)
    written = tmp_path / "config.yaml"
    written.write_text(f"model:\n  path: {DEFAULT_MODEL_PATH}\n  threads: 1\n")
    assert resolve_default_model(load_config(written)) == (load_config(written), "")
    partial = tmp_path / "partial.yaml"
    partial.write_text("model:\n  threads: 1\n")  # a model block without path still gets the default
    assert resolve_default_model(load_config(partial))[0].model.path == OFFLINE_MODEL_PATH
    given = apply_overrides(load_config(partial), {"model.path": "mine.onnx"})  # --model mine.onnx
    assert resolve_default_model(given) == (given, "")


def test_run_works_with_the_defaults_after_an_offline_auto_build(tmp_path: Path, effnet_models) -> None:
    """The trap itself: only what the offline build wrote, no config, no --model."""
    (tmp_path / "models").mkdir()
    shutil.copy(effnet_models.int8, tmp_path / OFFLINE_MODEL_PATH)
    proc = subprocess.run([sys.executable, "-m", "edgecam", "run", "--source", "demo", "--no-mqtt",
                           "--duration", "3"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert results and {r["model"]["name"] for r in results} == {"efficientnet_lite0_160_int8"}
    assert f"using {OFFLINE_MODEL_PATH}, the model `{BUILD}` builds when" in proc.stderr

    (tmp_path / "config.yaml").write_text("log_level: INFO\n")
    proc = subprocess.run([sys.executable, "-m", "edgecam", "check-config", "config.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and f"model {OFFLINE_MODEL_PATH} (" in proc.stdout, proc.stdout + proc.stderr
