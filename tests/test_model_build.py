"""`edgecam model build`: exported graphs match PyTorch, metadata round trip, caching."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import onnx
import pytest

from edgecam.export import build_model, load_model
from edgecam.export.export import check_single_file
from edgecam.export.weights import imagenet_labels
from edgecam.model.classifier import Classifier, is_untrained
from edgecam.model.metadata import DEFAULT_LAYOUT, info_from_props, info_to_props


def _torch_logits(arch: str, weights: str, size: int, tensor: np.ndarray) -> np.ndarray:
    import torch

    model = load_model(arch, weights, size)  # random weights are seeded: the same network
    with torch.no_grad():
        return model.module(torch.from_numpy(tensor)).numpy().reshape(-1)


@pytest.mark.parametrize("which", ["resnet_random_models", "effnet_models"])
def test_fp32_onnx_logits_match_torch(which, request, real_photos):
    pair = request.getfixturevalue(which)
    clf = Classifier(pair.fp32, threads=2)
    worst = 0.0
    for _, image in real_photos[:3]:
        tensor = clf.preprocessor(image)
        onnx_logits = clf.run_tensor(tensor)
        torch_logits = _torch_logits(pair.options.arch, pair.options.weights, 160, tensor)
        worst = max(worst, float(np.abs(onnx_logits - torch_logits).max()))
    print(f"{which}: max |ONNX FP32 - torch| logit difference {worst:.2e}")
    assert worst < 1e-3


def test_nhwc_layout_graph_matches_torch(resnet_random_nhwc_models, real_photos):
    """Normalization inside the graph: uint8 NHWC in, same logits as torch on the float tensor."""
    clf = Classifier(resnet_random_nhwc_models.fp32, threads=2)
    assert clf.info.layout == "NHWC_uint8"
    image = real_photos[1][1]
    tensor = clf.preprocessor(image)
    assert tensor.dtype == np.uint8 and tensor.shape == (1, 96, 96, 3)
    info = clf.info
    normalized = (tensor[0].astype(np.float32) / 255.0 - np.float32(info.mean)) / np.float32(info.std)
    expected = _torch_logits("resnet18", "random", 96, normalized.transpose(2, 0, 1)[None].copy())
    assert np.abs(clf.run_tensor(tensor) - expected).max() < 1e-3
    int8 = Classifier(resnet_random_nhwc_models.int8, threads=2)
    assert int8.probabilities(image).shape == (1000,)


def test_metadata_round_trip(effnet_models, resnet_random_models):
    lite = Classifier(effnet_models.int8).info
    assert lite.num_classes == 1000 and lite.labels == tuple(imagenet_labels())
    assert (lite.input_size, lite.arch, lite.precision) == (160, "efficientnet_lite0", "int8")
    assert lite.trained is True and lite.weights == "imagenet"
    assert lite.layout == DEFAULT_LAYOUT and lite.color_order == "RGB"
    assert lite.mean == pytest.approx((127 / 255,) * 3) and lite.std == pytest.approx((128 / 255,) * 3)
    assert lite.agreement["images"] == 40 and 0.0 <= lite.agreement["top1"] <= 1.0
    rand = Classifier(resnet_random_models.int8).info
    assert rand.trained is False and is_untrained(rand) and rand.weights == "random"
    assert rand.mean == pytest.approx((0.485, 0.456, 0.406))
    fp32 = Classifier(resnet_random_models.fp32).info
    assert fp32.precision == "fp32" and fp32.agreement == {}
    for info in (lite, rand, fp32):
        assert info_from_props(info_to_props(info), "x.onnx") == info


def test_files_are_single_and_int8_is_quantized(effnet_models, resnet_random_models):
    for pair in (effnet_models, resnet_random_models):
        for path in (pair.fp32, pair.int8):
            check_single_file(path)
            proto = onnx.load(str(path))
            assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
        ops = {node.op_type for node in onnx.load(str(pair.int8)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        # A fully INT8 file is ~26% of FP32; EfficientNet-Lite0 keeps its stem and blocks 0, 1, 3,
        # 4, 8, 9, 11 in FP32 (export/quantize.py FP32_LAYERS): 36%. Unquantized would be ~100%.
        ratio = pair.int8.stat().st_size / pair.fp32.stat().st_size
        assert ratio < 0.4, f"INT8 file is {ratio:.0%} of FP32"
    leftovers = [p for p in effnet_models.fp32.parent.iterdir() if p.suffix == ".data" or p.name.startswith(".build-")]
    assert leftovers == []


def test_up_to_date_build_is_skipped_and_force_rebuilds(resnet_random_nhwc_models):
    options = resnet_random_nhwc_models.options
    before = resnet_random_nhwc_models.int8.stat().st_mtime_ns
    report = build_model(options)
    assert report.skipped and resnet_random_nhwc_models.int8.stat().st_mtime_ns == before
    assert "up to date" in report.format()
    changed = dataclasses.replace(options, calib_count=options.calib_count + 1)
    from edgecam.export import up_to_date

    assert not up_to_date(changed)  # different options: would rebuild


def test_random_weights_are_reproducible():
    import torch

    a = load_model("resnet18", "random", 160).module.state_dict()
    b = load_model("resnet18", "random", 160).module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_with_labels_replaces_the_head(tmp_path):
    """--weights PATH --labels FILE: a 3-class ResNet-18 checkpoint."""
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(1)
    net = resnet18(num_classes=3)
    ckpt = tmp_path / "mine.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n\nbird\n")
    model = load_model("resnet18", str(ckpt), 96, str(labels))
    assert model.labels == ("cat", "dog", "bird") and model.trained
    assert torch.equal(model.module.fc.weight, net.fc.weight)
    from edgecam.errors import ModelBuildError

    with pytest.raises(ModelBuildError, match="checkpoint has 3 classes: pass --labels"):
        load_model("resnet18", str(ckpt), 96)
    labels.write_text("a\nb\n")
    with pytest.raises(ModelBuildError, match="--labels has 2 labels but the checkpoint has 3"):
        load_model("resnet18", str(ckpt), 96, str(labels))


def test_build_leaves_no_temporary_files(resnet_random_models):
    names = os.listdir(resnet_random_models.int8.parent)
    assert not [n for n in names if n.startswith(".build-") or n.endswith(".prep.onnx")]
