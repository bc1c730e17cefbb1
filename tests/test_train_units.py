"""`edgecam train` pieces on values: dataset scanning and split, metrics, warnings, verdict,
augmentation, the backbone split and its two engines, the confusion PNG, progress lines.

ResNet-18's ImageNet weights need torchvision's download (offline here), so its split is
checked with seeded random weights; `edgecam train --arch resnet18` offline must fail
with the path to put the weights at."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.errors import ModelBuildError
from edgecam.model.describe import format_confusion
from edgecam.training.augment import random_view
from edgecam.training.dataset import load_dataset, stratified_subset
from edgecam.training.metrics import (
    accuracy,
    confusion_matrix,
    data_warnings,
    per_class,
    verdict,
)
from edgecam.training.plot import CELL, confusion_image
from edgecam.training.progress import Progress


def _write(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)


def _folder(root: Path, counts: dict[str, int]) -> Path:
    seed = 0
    for label, count in counts.items():
        for i in range(count):
            seed += 1
            _write(root / label / f"{i}.png", seed)
    return root


# ---- metrics --------------------------------------------------------------------------------


def test_confusion_matrix_precision_recall():
    true = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    pred = [0, 0, 1, 2, 1, 1, 2, 2, 2, 0]
    matrix = confusion_matrix(true, pred, 3)
    assert matrix.tolist() == [[2, 1, 1], [0, 2, 0], [1, 0, 3]]
    assert accuracy(matrix) == pytest.approx(0.7)
    stats = per_class(matrix, ["a", "b", "c"])
    assert stats["a"] == {"precision": pytest.approx(2 / 3, abs=1e-4), "recall": 0.5, "support": 4}
    assert stats["b"] == {"precision": pytest.approx(2 / 3, abs=1e-4), "recall": 1.0, "support": 2}
    assert stats["c"]["precision"] == 0.75 and stats["c"]["recall"] == 0.75
    never = per_class(confusion_matrix([0, 0], [0, 0], 2), ["x", "y"])
    assert never["y"] == {"precision": None, "recall": None, "support": 0}
    text = format_confusion(matrix.tolist(), ["a", "b", "c"])
    assert text.splitlines()[2].split() == ["b", "0", "2", "0"]


def test_warnings_small_classes_and_imbalance():
    assert data_warnings({"open": 20, "closed": 60}) == []  # 3x exactly is allowed
    warnings = data_warnings({"open": 19, "closed": 60, "none": 25})
    assert len(warnings) == 2
    assert "'open' has 19 images, fewer than 20" in warnings[0]
    assert "'closed' has 60 images, 'open' has 19 (3.2x)" in warnings[1]


def test_verdict_from_the_learning_curve():
    def curve(a25, a50, a100):
        return [{"fraction": f, "images": 0, "accuracy": a} for f, a in ((0.25, a25), (0.5, a50), (1.0, a100))]

    rising = verdict(curve(0.70, 0.80, 0.90), 50)
    assert rising["enough_data"] is False and rising["text"].startswith("not yet")
    flat_high = verdict(curve(0.9, 0.97, 0.98), 50)  # +1 point with 50 images: noise
    assert flat_high["enough_data"] is True and flat_high["text"].startswith("yes")
    flat_low = verdict(curve(0.7, 0.8, 0.8), 50)
    assert flat_low["enough_data"] is False and "more of the same" in flat_low["text"]
    # With 10 validation images one image is 10 points: a 10-point rise is not a trend.
    small = verdict(curve(0.8, 0.9, 1.0), 10)
    assert small["enough_data"] is True and "rough" in small["text"]
    assert verdict([], 50)["enough_data"] is None


def test_trained_metadata_round_trips_and_old_files_still_parse():
    from edgecam.errors import ModelError
    from edgecam.model.metadata import info_from_props, info_to_props
    from edgecam.model.types import ModelInfo

    info = ModelInfo(name="door_int8", arch="efficientnet_lite0", precision="int8", input_size=160,
                     labels=("closed", "open"), trained=True, weights="imagenet, then edgecam train",
                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), color_order="RGB", layout="NCHW_float",
                     agreement={"images": 4, "top1": 1.0, "top5": 1.0},
                     dataset={"fingerprint": "sha256:0123", "classes": {"open": {"train": 8, "val": 2}}},
                     metrics={"accuracy": {"int8": 0.9}, "confusion": [[1, 0], [1, 2]]})
    props = info_to_props(info)
    assert info_from_props(props, "door.onnx") == info
    old = {k: v for k, v in props.items() if k not in ("dataset", "metrics")}  # before edgecam train
    assert info_from_props(old, "old.onnx").metrics == {} and info_from_props(old, "old.onnx").dataset == {}
    with pytest.raises(ModelError, match="metrics is not valid JSON"):
        info_from_props({**props, "metrics": "{oops"}, "bad.onnx")


# ---- dataset --------------------------------------------------------------------------------


def test_dataset_split_is_stratified_and_ignores_inbox(tmp_path):
    root = _folder(tmp_path / "door", {"open": 10, "closed": 25, "inbox": 7, ".trash": 3})
    (root / "closed" / "notes.txt").write_text("not an image")
    (root / "closed" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    data = load_dataset(root, val_fraction=0.2, seed=0)
    assert data.labels == ("closed", "open")
    assert data.counts(data.val) == {"closed": 5, "open": 2}
    assert data.counts(data.train) == {"closed": 20, "open": 8}
    assert data.skipped == ["closed/broken.jpg"]
    assert not {s.path for s in data.train} & {s.path for s in data.val}
    summary = data.summary()
    assert summary["classes"]["open"] == {"train": 8, "val": 2} and summary["images"] == 35
    again = load_dataset(root, val_fraction=0.2, seed=0)
    assert [s.path for s in again.val] == [s.path for s in data.val]
    assert again.fingerprint == data.fingerprint
    other = load_dataset(root, val_fraction=0.2, seed=1)
    assert [s.path for s in other.val] != [s.path for s in data.val]


def test_fingerprint_follows_bytes_and_labels(tmp_path):
    root = _folder(tmp_path / "d", {"a": 3, "b": 3})
    first = load_dataset(root).fingerprint
    _write(root / "a" / "0.png", 999)  # same name, other pixels
    changed = load_dataset(root).fingerprint
    (root / "a" / "1.png").rename(root / "b" / "moved.png")  # relabelled
    moved = load_dataset(root).fingerprint
    assert len({first, changed, moved}) == 3 and first.startswith("sha256:")


def test_train_and_val_folders_are_used_as_they_are(tmp_path):
    root = tmp_path / "d"
    _folder(root / "train", {"cat": 4, "empty": 5})
    _folder(root / "val", {"cat": 2, "empty": 3})
    data = load_dataset(root, val_fraction=0.5)
    assert data.counts(data.train) == {"cat": 4, "empty": 5}
    assert data.counts(data.val) == {"cat": 2, "empty": 3}
    assert "train/ and val/" in data.split
    _folder(root / "val", {"dog": 1})
    with pytest.raises(ModelBuildError, match="val/ has classes that train/ lacks: dog"):
        load_dataset(root)


@pytest.mark.parametrize("counts, message", [
    ({"only": 5}, "found 1 class folder"),
    ({"a": 5, "b": 1}, "class 'b' has 1 usable image"),
])
def test_bad_datasets_are_refused_clearly(tmp_path, counts, message):
    with pytest.raises(ModelBuildError, match=message):
        load_dataset(_folder(tmp_path / "d", counts))
    with pytest.raises(ModelBuildError, match="no such folder"):
        load_dataset(tmp_path / "missing")


def test_stratified_subset_keeps_every_class(tmp_path):
    data = load_dataset(_folder(tmp_path / "d", {"a": 21, "b": 5}), val_fraction=0.2)
    picked = stratified_subset(data.train, 0.25, seed=0)
    labels = [data.train[i].label for i in picked]
    assert labels.count(0) == 5 and labels.count(1) == 1  # ceil(25% of 17), ceil(25% of 4)


# ---- augmentation ---------------------------------------------------------------------------


def test_random_views_jitter_but_never_mirror_with_no_flip():
    image = np.zeros((120, 160, 3), np.uint8)
    image[:, 80:] = 200  # dark left half, bright right half
    rng = np.random.default_rng(0)
    mirrored = 0
    for _ in range(40):
        view = random_view(image, rng, flip=False)
        h, w = view.shape[:2]
        assert 0.75 * 120 * 160 * 0.85 <= h * w <= 120 * 160 and view.dtype == np.uint8
        assert view[:, : w // 4].mean() < view[:, -w // 4 :].mean()
        mirrored += int(random_view(image, rng, flip=True)[:, :8].mean() > 100)
    assert 8 <= mirrored <= 32  # about half of the flip=True views are mirrored


# ---- network split and engines --------------------------------------------------------------


@pytest.mark.parametrize("arch, weights, dim", [("efficientnet_lite0", "imagenet", 1280),
                                                ("resnet18", "random", 512)])
def test_split_network_and_both_engines_compute_the_same(arch, weights, dim, real_photos):
    import torch

    from edgecam.model.preprocess import Preprocessor
    from edgecam.training.network import build_network, make_engine
    from edgecam.training.torch_trainer import feature_info

    torch.set_num_threads(1)
    net = build_network(arch, 96, 3, seed=0, weights=weights)
    assert net.feature_dim == dim and net.head.out_features == 3
    assert not any(p.requires_grad for p in net.module.parameters())  # frozen until trained
    pre = Preprocessor(feature_info(arch, 96, ("a", "b", "c"), net.mean, net.std))
    batch = np.concatenate([pre(image) for _, image in real_photos[:2]])
    with torch.no_grad():
        whole = net.module(torch.from_numpy(batch)).numpy()
        split = net.head(net.tail(net.trunk(torch.from_numpy(batch)))).numpy()
    assert np.abs(whole - split).max() < 1e-5
    with tempfile.TemporaryDirectory() as tmp:
        ort_engine = make_engine("auto", net, True, "cpu", 1, Path(tmp))
        assert ort_engine.name == "onnxruntime"
        pooled_ort, trunk_ort = ort_engine(batch)
    pooled_t, trunk_t = make_engine("torch", net, True, "cpu", 1, Path("."))(batch)
    assert pooled_ort.shape == (2, dim) and trunk_ort.shape[0] == 2
    print(f"onnxruntime vs torch: pooled {np.abs(pooled_ort - pooled_t).max():.2e}, "
          f"trunk {np.abs(trunk_ort - trunk_t).max():.2e}")
    assert np.abs(pooled_ort - pooled_t).max() < 1e-3 and np.abs(trunk_ort - trunk_t).max() < 1e-3


def test_device_choice():
    import torch

    from edgecam.training.network import pick_device

    if torch.cuda.is_available():
        assert pick_device("auto") == "cuda"
    else:
        assert pick_device("auto") == "cpu"
        with pytest.raises(ModelBuildError, match="--device cuda: torch .* sees no CUDA GPU"):
            pick_device("cuda")


# ---- outputs ------------------------------------------------------------------------------------


def test_confusion_png_colours_cells_by_row_share():
    matrix = np.array([[8, 2, 0], [0, 5, 5], [0, 0, 0]])
    image = confusion_image(matrix, ["open", "closed", "none"], "title")
    assert image.ndim == 3 and image.shape[2] == 3
    # Find the cells by colour: the 8/10 diagonal cell is strongly green, 5/10 off-diagonal red-ish.
    green = (image[:, :, 1].astype(int) - image[:, :, 2].astype(int)) > 60
    red = (image[:, :, 2].astype(int) - image[:, :, 1].astype(int)) > 60
    assert green.sum() > 0.5 * CELL * CELL  # the (open, open) cell
    assert red.sum() > 0.5 * CELL * CELL  # the (closed, none) cell


def test_progress_lines_without_a_terminal():
    out = io.StringIO()
    with Progress(8, "features", stream=out) as bar:
        for _ in range(8):
            bar.update(1, note="ok")
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].strip().startswith("features [" + "#" * 24 + "] 8/8")


def test_resnet18_offline_names_the_weights_path(tmp_path):
    from tests.test_model_cli import OFFLINE
    from tests.test_model_errors import run_cli

    data = _folder(tmp_path / "d", {"a": 2, "b": 2})
    home = tmp_path / "torch-home"
    result = run_cli("train", str(data), "--arch", "resnet18", "--out", str(tmp_path / "out"),
                     env={"TORCH_HOME": str(home), **OFFLINE})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgecam: error: ResNet-18 ImageNet weights are not available")
    assert str(home / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in last
    assert not list((tmp_path / "out").glob("*.onnx"))
