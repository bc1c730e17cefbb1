"""`edgecam train` end to end on two real labelled sets, on the CPU.

Floors. Both tasks are two-class, so chance is 50%. ImageNet features separate
them easily: measured here (x86, seed 0), validation accuracy was 97-100% on
the scene and 100% on the faces, FP32 and INT8 alike. The floor of 85% leaves
room for a few validation images to flip on another CPU's float rounding
(CI runs elsewhere), while anything that breaks the chain (labels shuffled,
training preprocessing different from the runtime's, a wrong export or
calibration) drops a two-class model towards 50%.
"""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest

from edgecam.bench.train_data import lfw_dataset, scene_dataset, scene_sample
from edgecam.cli import main
from edgecam.model.classifier import Classifier
from edgecam.training import TrainOptions, train_model
from edgecam.training.dataset import load_dataset

FLOOR = 0.85
MIN_AGREEMENT = 0.95


@pytest.fixture(scope="module")
def scene_run(tmp_path_factory):
    """Cat in / not in a region of the rocket photo: 40 crops per class, 40% held out."""
    root = tmp_path_factory.mktemp("train") / "feeder"
    scene_dataset(root, per_class=40, seed=0)
    (root / "inbox").mkdir()
    cv2.imwrite(str(root / "inbox" / "unlabelled.jpg"), scene_sample(True, np.random.default_rng(9)))
    options = TrainOptions(
        dataset=str(root), out_dir=str(root.parent / "models"), size=128, val_fraction=0.4,
        finetune=True, finetune_epochs=1, threads=1, device="cpu",
    )
    return options, train_model(options)


@pytest.fixture(scope="module")
def lfw_run(tmp_path_factory):
    """skimage's lfw_subset: 100 faces, 100 non-faces, 25x25 grey; head only."""
    root = lfw_dataset(tmp_path_factory.mktemp("train") / "faces")
    options = TrainOptions(dataset=str(root), out_dir=str(root.parent / "models"), size=96,
                           views=2, threads=1, device="cpu")
    return options, train_model(options)


def _check_run(options: TrainOptions, result, labels: tuple[str, ...]) -> dict:
    info = Classifier(result.int8).info
    metrics = info.metrics
    assert info.labels == labels and info.precision == "int8" and info.trained
    assert metrics["accuracy"]["int8"] >= FLOOR and metrics["accuracy"]["fp32"] >= FLOOR, metrics["accuracy"]
    assert info.agreement["top1"] >= MIN_AGREEMENT, info.agreement
    # The reported confusion matrix is what the INT8 file answers on the validation split.
    data = load_dataset(options.dataset, options.val_fraction, options.seed)
    clf = Classifier(result.int8, threads=2)
    preds = clf.logits_batch([cv2.imread(str(s.path)) for s in data.val]).argmax(1)
    matrix = np.zeros((len(labels), len(labels)), int)
    for sample, pred in zip(data.val, preds):
        matrix[sample.label, pred] += 1
    assert metrics["confusion"] == matrix.tolist()
    assert metrics["val_images"] == len(data.val) == int(matrix.sum())
    assert info.dataset["fingerprint"] == data.fingerprint
    assert [p["fraction"] for p in metrics["learning_curve"]] == [0.25, 0.5, 1.0]
    assert metrics["verdict"]["text"] and metrics["training"]["device"] == "cpu"
    assert metrics["export_check_max_logit_diff"] < 1e-3
    png = cv2.imread(str(result.png))
    assert png is not None and png.shape[0] > 100
    assert result.report_file.read_text() == result.report + "\n"
    assert Classifier(result.fp32).info.metrics == metrics
    return metrics


def test_scene_model_learns_the_region_and_reports_it(scene_run):
    options, result = scene_run
    metrics = _check_run(options, result, ("cat", "empty"))
    info = Classifier(result.int8).info
    assert info.dataset["classes"] == {"cat": {"train": 24, "val": 16}, "empty": {"train": 24, "val": 16}}
    assert "inbox" not in info.dataset["classes"]
    assert metrics["training"]["finetuned"].startswith("blocks 11-15")
    assert "'cat' has" not in " ".join(metrics["warnings"])  # 40 per class, balanced
    # New crops, never seen, through the runtime's batch path as the daemon feeds regions.
    rng = np.random.default_rng(1234)
    crops = [scene_sample(present, rng) for present in [True, False] * 10]
    probs = Classifier(result.int8, threads=2).probabilities_batch(crops)
    right = (probs.argmax(1) == np.array([0, 1] * 10)).mean()
    print(f"scene: validation {metrics['accuracy']}, fresh crops {right:.0%}")
    assert right >= FLOOR


def test_lfw_model_tells_faces_from_non_faces(lfw_run):
    options, result = lfw_run
    metrics = _check_run(options, result, ("face", "not_face"))
    print(f"lfw: validation {metrics['accuracy']}, curve {metrics['learning_curve']}")
    assert metrics["training"]["finetuned"] == "no"
    assert metrics["per_class"]["face"]["support"] == 20


def test_model_info_prints_everything(lfw_run, capsys):
    _, result = lfw_run
    assert main(["model", "info", str(result.int8)]) == 0
    text = capsys.readouterr().out
    info = Classifier(result.int8).info
    for needle in ("labels (2): face, not_face", info.dataset["fingerprint"], "confusion matrix",
                   "learning curve", "enough data?", "face         80     20", "any batch size",
                   f"accuracy FP32 {info.metrics['accuracy']['fp32']:.1%}"):
        assert needle in text, needle
    assert main(["model", "info", "--json", str(result.int8)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["labels"] == ["face", "not_face"] and data["batch_capable"] is True
    assert data["dataset"]["classes"]["not_face"] == {"train": 80, "val": 20}
    assert data["metrics"]["confusion"] == info.metrics["confusion"]
    assert data["input_shape"][1:] == [3, 96, 96]


def test_model_info_on_an_imagenet_build(effnet_models, capsys):
    assert main(["model", "info", str(effnet_models.int8)]) == 0
    text = capsys.readouterr().out
    assert "labels (1000): tench, goldfish" in text and "dataset:" not in text


def test_train_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "d" / "a").mkdir(parents=True)
    assert main(["train", str(tmp_path / "d"), "--size", "100"]) == 2
    assert "--size 100" in capsys.readouterr().err


def test_the_daemon_side_never_imports_torch():
    """Registering `edgecam train` with the CLI imports neither torch nor the training loops."""
    import subprocess

    code = ("import sys; from edgecam.cli import build_parser; build_parser(); "
            "import edgecam.model.classifier, edgecam.model.describe; "
            "print(sorted(m for m in ('torch', 'edgecam.training.fit', "
            "'edgecam.training.network') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
