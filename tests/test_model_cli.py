"""`edgecam classify` and `edgecam model build` from the command line, and the offline fallback."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import cv2
import pytest

from edgecam.bench.models import TEST_CALIB, TEST_HOLDOUT
from edgecam.cli.model import default_model
from edgecam.errors import ModelError
from edgecam.export import BuildOptions, ensure_default_model, output_paths
from edgecam.export.weights import (
    RESNET18_FILE,
    WeightsUnavailableError,
    resnet18_cache_path,
)
from tests.test_model_errors import run_cli

# Simulated "offline": an empty torch cache and an HTTPS proxy on a closed port,
# so the real download code path fails the same way with or without internet.
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Path:
    """An empty TORCH_HOME with downloads failing; returns where the weights would go."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    return home / "hub" / "checkpoints" / RESNET18_FILE


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory, real_photos) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    files = {}
    for name in ("chelsea", "coffee"):
        files[name] = folder / f"{name}.jpg"
        cv2.imwrite(str(files[name]), dict(real_photos)[name])
    return files


def test_classify_prints_top3_and_ms(effnet_models, photo_files):
    result = run_cli("classify", "--model", str(effnet_models.int8), "--threads", "1",
                     str(photo_files["chelsea"]), str(photo_files["coffee"]))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "efficientnet_lite0_160_int8" in out
    blocks = out.split(str(photo_files["coffee"]))
    assert re.search(r"chelsea\.jpg\s+\(451x300\)\s+\d+\.\d+ ms", blocks[0])
    assert {"Egyptian cat", "tabby", "tiger cat"} & set(re.findall(r"\d\. (.+?)  0\.\d+", blocks[0]))
    assert re.findall(r"\d\. (.+?)  0\.\d+", blocks[1])[0] == "espresso"
    assert len(re.findall(r"^\s+\d\. ", out, re.MULTILINE)) == 6  # top-3 for each image


def test_classify_unreadable_image_exit_2(effnet_models, photo_files, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    result = run_cli("classify", "--model", str(effnet_models.int8),
                     str(tmp_path / "nope.jpg"), str(junk), str(photo_files["coffee"]))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgecam: error:")]
    assert errors == [
        f"edgecam: error: cannot read image {tmp_path / 'nope.jpg'}: no such file",
        f"edgecam: error: cannot read image {junk}: not an image format OpenCV can decode (or truncated)",
    ]
    assert "espresso" in result.stdout  # the good image is still classified


def test_classify_warns_on_untrained_model(resnet_random_models, photo_files):
    result = run_cli("classify", "--model", str(resnet_random_models.int8), str(photo_files["coffee"]))
    assert result.returncode == 0
    assert "random (untrained) weights" in result.stderr


def test_default_model_lookup(tmp_path, effnet_models):
    with pytest.raises(ModelError, match="edgecam model build --arch auto"):
        default_model(tmp_path)
    shutil.copy(effnet_models.int8, tmp_path / effnet_models.int8.name)
    assert default_model(tmp_path) == tmp_path / "efficientnet_lite0_160_int8.onnx"
    (tmp_path / "resnet18_160_int8.onnx").write_bytes(b"")
    assert default_model(tmp_path) == tmp_path / "resnet18_160_int8.onnx"


@pytest.mark.parametrize("size", ["100", "64", "352"])
def test_build_bad_size_exit_2(size, tmp_path):
    result = run_cli("model", "build", "--size", size, "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"edgecam: error: --size {size} is not supported: use a multiple of 32 from 96 to 320 "
        "(96, 128, 160, 192, 224, 256, 288, 320)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_build_imagenet_offline_names_the_cache_path(tmp_path):
    home = tmp_path / "torch-home"
    result = run_cli("model", "build", "--out", str(tmp_path / "out"),
                     env={"TORCH_HOME": str(home), **OFFLINE})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgecam: error: ResNet-18 ImageNet weights are not available")
    assert str(home / "hub" / "checkpoints" / RESNET18_FILE) in last
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.onnx"))


def test_imagenet_weights_with_the_real_cache():
    """With the machine's own torch cache: the real weights load where the file is
    there, and where it is not (offline CI) the error names exactly where to put it."""
    from edgecam.export import load_model

    if resnet18_cache_path().exists():
        model = load_model("resnet18", "imagenet", 160)
        assert model.trained and len(model.labels) == 1000
        return
    with pytest.raises(WeightsUnavailableError, match=re.escape(str(resnet18_cache_path()))):
        load_model("resnet18", "imagenet", 160)


def test_fallback_reuses_existing_effnet(offline, tmp_path, effnet_models, caplog):
    out = tmp_path / "models"
    out.mkdir()
    for path in (effnet_models.fp32, effnet_models.int8):
        shutil.copy(path, out / path.name)
    with caplog.at_level(logging.INFO, logger="edgecam"):
        got = ensure_default_model(out_dir=str(out), calib_count=TEST_CALIB,
                                   holdout_count=TEST_HOLDOUT, quiet=True)
    assert got == out / "efficientnet_lite0_160_int8.onnx"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(offline) in warnings[0] and "EfficientNet-Lite0" in warnings[0]


def test_fallback_builds_effnet_when_resnet_weights_cannot_be_had(offline, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="edgecam"):
        got = ensure_default_model(out_dir=str(tmp_path), size=96, calib_count=8, holdout_count=4,
                                   timing_runs=0, quiet=True)
    assert got == tmp_path / "efficientnet_lite0_96_int8.onnx" and got.is_file()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "building EfficientNet-Lite0" in warnings[0]
    assert str(offline) in warnings[0]
    resnet = output_paths(BuildOptions(arch="resnet18", size=96, out_dir=str(tmp_path)))
    assert not any(p.exists() for p in resnet)
