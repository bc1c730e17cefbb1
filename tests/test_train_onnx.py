"""The torch-free trainer's pieces against torch, on values: the numpy head's loss,
gradient and AdamW step are torch's; on real EfficientNet-Lite0 features it reaches
the torch head's validation accuracy; the ONNX backbone cut from a model file
computes what the torch network computes; a grafted head gives the logits the
numpy head gives; and a trained model file looks to the runtime like the torch
trainer's (same input, output, nodes and metadata keys).

torch is the reference here (this process has it); tests/test_train_notorch.py runs
the whole command where torch is not installed at all.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from edgecam.bench.train_data import lfw_dataset
from edgecam.errors import ModelBuildError
from edgecam.model.classifier import Classifier
from edgecam.training import TrainOptions, train_model
from edgecam.training.backbone import (
    FEATURES_OUTPUT,
    features_model,
    graft,
    load_backbone,
)
from edgecam.training.dataset import load_dataset
from edgecam.training.features import extract
from edgecam.training.head import (
    AdamW,
    LinearHead,
    loss_gradient,
    train_head,
    weighted_loss,
)
from edgecam.training.onnx_trainer import BackboneEngine
from edgecam.training.recipe import (
    LABEL_SMOOTHING,
    WEIGHT_DECAY,
    HeadSettings,
    class_weights,
)


def test_loss_and_gradient_are_torchs():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (9, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 2, 2, 1, 0, 2, 2])
    weight = class_weights(y, 3)
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = F.cross_entropy(t_logits, torch.tensor(y), weight=torch.tensor(weight), label_smoothing=LABEL_SMOOTHING)
    t_loss.backward()
    assert weighted_loss(logits, y, weight, LABEL_SMOOTHING) == pytest.approx(t_loss.item(), rel=1e-5)
    assert np.abs(loss_gradient(logits, y, weight, LABEL_SMOOTHING) - t_logits.grad.numpy()).max() < 1e-6
    plain = F.cross_entropy(torch.tensor(logits), torch.tensor(y), weight=torch.tensor(weight)).item()
    assert weighted_loss(logits, y, weight) == pytest.approx(plain, rel=1e-5)


def test_adamw_steps_are_torchs():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 5)).astype(np.float32)
    t_w = torch.nn.Parameter(torch.tensor(w))
    t_opt = torch.optim.AdamW([t_w], lr=1e-2, weight_decay=WEIGHT_DECAY)
    ours = AdamW([w], lr=1e-2, weight_decay=WEIGHT_DECAY)
    for step in range(25):
        grad = rng.normal(size=w.shape).astype(np.float32) * (step + 1)
        t_w.grad = torch.tensor(grad)
        t_opt.step()
        ours.step([grad])
    assert np.abs(w - t_w.detach().numpy()).max() < 1e-5


@pytest.fixture(scope="module")
def lfw_features(tmp_path_factory, effnet_models):
    """Pooled EfficientNet-Lite0 features of skimage's lfw_subset (4 views), by the ONNX backbone."""
    root = lfw_dataset(tmp_path_factory.mktemp("lfw") / "faces")
    data = load_dataset(root, val_fraction=0.2, seed=0)
    backbone = load_backbone(effnet_models.fp32)
    cache = extract(BackboneEngine(backbone, 2), data, Classifier(effnet_models.fp32).preprocessor,
                    views=4, flip=True, seed=0, cache_mb=0, batch=4)
    y_train = np.array([s.label for s in data.train])
    y_val = np.array([s.label for s in data.val])
    x, y = cache.rows(np.arange(len(data.train)), y_train)
    return backbone, x, y, cache.val_pooled, y_val


def test_numpy_head_reaches_the_torch_heads_accuracy(lfw_features):
    from edgecam.training.fit import train_head as torch_train_head

    _, x, y, x_val, y_val = lfw_features
    settings = HeadSettings(max_epochs=200)
    head, fit = train_head(x, y, x_val, y_val, 2, seed=0, settings=settings)
    linear = torch.nn.Linear(x.shape[1], 2)
    torch_fit = torch_train_head(linear, x, y, x_val, y_val, "cpu", 0, settings)
    ours = (head.logits(x_val).argmax(1) == y_val).mean()
    print(f"val accuracy numpy {fit.val_accuracy:.3f} (epoch {fit.best_epoch}/{fit.epochs}), "
          f"torch {torch_fit.val_accuracy:.3f} (epoch {torch_fit.best_epoch}/{torch_fit.epochs})")
    assert ours == pytest.approx(fit.val_accuracy)  # the kept weights are the best epoch's
    assert fit.val_accuracy >= 0.9 and abs(fit.val_accuracy - torch_fit.val_accuracy) <= 1 / len(y_val) + 1e-9
    assert fit.epochs < 200 and fit.best_epoch <= fit.epochs  # early stopping worked


def test_backbone_cut_computes_the_torch_networks_features(effnet_models, real_photos):
    from edgecam.export.weights import load_model

    backbone = load_backbone(effnet_models.fp32)
    assert backbone.feature_dim == 1280 and not backbone.dequantized and backbone.info.arch == "efficientnet_lite0"
    session = ort.InferenceSession(features_model(backbone), providers=["CPUExecutionProvider"])
    clf = Classifier(effnet_models.fp32)
    batch = clf.preprocessor.batch([image for _, image in real_photos[:4]])
    pooled = session.run([FEATURES_OUTPUT], {"input": batch})[0]
    net = load_model("efficientnet_lite0", "imagenet", 160).module.eval()
    with torch.no_grad():
        torch_pooled = net._avg_pooling(net.extract_features(torch.from_numpy(batch))).flatten(1).numpy()
    assert pooled.shape == (4, 1280) and np.abs(pooled - torch_pooled).max() < 1e-3
    # The ImageNet head on the cut features is the file itself.
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in backbone.model.graph.initializer}
    head = LinearHead(weights[backbone.head.input[1]], weights[backbone.head.input[2]])
    assert np.abs(head.logits(pooled) - clf.logits_batch([image for _, image in real_photos[:4]])).max() < 1e-4


def test_int8_file_is_dequantized_into_a_usable_backbone(effnet_models, real_photos):
    fp32, int8 = load_backbone(effnet_models.fp32), load_backbone(effnet_models.int8)
    assert int8.dequantized and int8.feature_dim == 1280
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in int8.model.graph.node)
    images = [image for _, image in real_photos]
    batch = Classifier(effnet_models.fp32).preprocessor.batch(images)
    feats = [ort.InferenceSession(features_model(b), providers=["CPUExecutionProvider"])
             .run([FEATURES_OUTPUT], {"input": batch})[0] for b in (fp32, int8)]
    corr = np.corrcoef(feats[0].ravel(), feats[1].ravel())[0, 1]
    # Its own ImageNet head agrees with the INT8 file on the top-1 class of most photos.
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in int8.model.graph.initializer}
    top1 = LinearHead(weights[int8.head.input[1]], weights[int8.head.input[2]]).logits(feats[1]).argmax(1)
    agree = (top1 == Classifier(effnet_models.int8).logits_batch(images).argmax(1)).mean()
    print(f"dequantized INT8 vs FP32 features: correlation {corr:.4f}; top-1 = INT8 file's on {agree:.0%}")
    assert corr > 0.99 and agree >= 0.8


def test_graft_answers_what_the_numpy_head_answers(lfw_features, tmp_path):
    backbone, x, y, x_val, y_val = lfw_features
    head, _ = train_head(x, y, x_val, y_val, 2, seed=0, settings=HeadSettings(max_epochs=5))
    out = tmp_path / "grafted.onnx"
    graft(backbone, head.weight, head.bias, out)
    grafted = onnx.load(str(out))
    original = backbone.model.graph
    assert [n.name for n in grafted.graph.node] == [n.name for n in original.node]
    assert grafted.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 2
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    features = ort.InferenceSession(features_model(backbone), providers=["CPUExecutionProvider"])
    tensor = np.random.default_rng(0).normal(0, 1, (3, 3, 160, 160)).astype(np.float32)
    pooled = features.run([FEATURES_OUTPUT], {"input": tensor})[0]
    assert np.abs(session.run(None, {"input": tensor})[0] - head.logits(pooled)).max() < 1e-4


def test_backbones_that_cannot_be_cut_are_refused(tmp_path, resnet_random_models, effnet_models):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelBuildError, match="not an ONNX file"):
        load_backbone(tmp_path / "junk.onnx")
    with pytest.raises(ModelBuildError, match="no such file"):
        load_backbone(tmp_path / "missing.onnx")
    model = onnx.load(str(effnet_models.fp32))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelBuildError, match="no edgecam metadata"):
        load_backbone(tmp_path / "bare.onnx")
    data = lfw_dataset(tmp_path / "faces")
    options = TrainOptions(dataset=str(data), out_dir=str(tmp_path / "out"), threads=1,
                           backbone=str(resnet_random_models.fp32))
    with pytest.raises(ModelBuildError, match="random \\(untrained\\)"):
        train_model(options)
    with pytest.raises(ModelBuildError, match="--size 96: the backbone efficientnet_lite0_160_fp32.onnx is 160"):
        train_model(TrainOptions(dataset=str(data), out_dir=str(tmp_path / "out"), size=96,
                                 backbone=str(effnet_models.fp32)))
    assert not list((tmp_path / "out").glob("*.onnx"))


def test_trained_file_looks_like_the_torch_trainers(tmp_path, effnet_models):
    """Both trainers on the same faces: same input, output, node names, metadata keys; the
    torch-free one needs no torch, and reaches the same validation accuracy."""
    data = lfw_dataset(tmp_path / "faces")
    common = {"dataset": str(data), "out_dir": str(tmp_path / "out"), "views": 2, "threads": 1,
              "learning_curve": False, "calib_count": 16}
    onnx_run = train_model(TrainOptions(**common, name="numpy", backbone=str(effnet_models.fp32)))
    torch_run = train_model(TrainOptions(**common, name="torch", trainer="torch", device="cpu"))
    a, b = onnx.load(str(onnx_run.fp32)), onnx.load(str(torch_run.fp32))
    assert [n.name for n in a.graph.node] == [n.name for n in b.graph.node]
    assert a.graph.input == b.graph.input and a.graph.output == b.graph.output
    assert {p.key for p in a.metadata_props} == {p.key for p in b.metadata_props}
    ia, ib = Classifier(onnx_run.int8).info, Classifier(torch_run.int8).info
    assert ia.metrics["training"]["trainer"] == "numpy (no torch)" and ib.metrics["training"]["trainer"] == "torch"
    assert (ia.labels, ia.mean, ia.std, ia.layout, ia.input_size) == \
        (ib.labels, ib.mean, ib.std, ib.layout, ib.input_size)
    print(f"val accuracy INT8: numpy {ia.metrics['accuracy']['int8']}, torch {ib.metrics['accuracy']['int8']}")
    assert abs(ia.metrics["accuracy"]["int8"] - ib.metrics["accuracy"]["int8"]) <= 1 / ia.metrics["val_images"] + 1e-9
    assert ia.metrics["export_check_max_logit_diff"] < 1e-3
    image = cv2.imread(str(next((data / "face").glob("*.png"))))
    assert Classifier(onnx_run.int8).classify(image, k=2)[0].label in ("face", "not_face")
    report = Path(onnx_run.report_file).read_text().rstrip()
    assert report.endswith(f"edgecam classify --model {onnx_run.int8.resolve()} IMAGE...")


@pytest.mark.parametrize("which", ["fp32", "nhwc", "int8"])
def test_resnet18_and_nhwc_backbones_graft_into_files_the_runtime_runs(
        which, tmp_path, resnet_random_models, resnet_random_nhwc_models, real_photos):
    """The cut and the graft on another architecture, on the NHWC_uint8 layout (normalization
    inside the graph) and on an INT8 file: the runtime's Classifier runs the result unchanged."""
    import dataclasses

    from edgecam.export.metadata import write_metadata

    source = {"fp32": resnet_random_models.fp32, "nhwc": resnet_random_nhwc_models.fp32,
              "int8": resnet_random_models.int8}[which]
    backbone = load_backbone(source)
    assert backbone.feature_dim == 512 and backbone.dequantized == (which == "int8")
    rng = np.random.default_rng(0)
    head = LinearHead(rng.normal(0, 0.05, (3, 512)).astype(np.float32), np.array([0.1, 0.0, -0.1], np.float32))
    out = tmp_path / "grafted.onnx"
    graft(backbone, head.weight, head.bias, out)
    info = dataclasses.replace(backbone.info, name="grafted", labels=("a", "b", "c"), precision="fp32")
    write_metadata(out, info, {})
    clf = Classifier(out, threads=1)
    images = [image for _, image in real_photos[:3]]
    batch = clf.preprocessor.batch(images)
    assert batch.dtype == (np.uint8 if which == "nhwc" else np.float32)
    pooled = ort.InferenceSession(features_model(backbone), providers=["CPUExecutionProvider"]).run(
        [FEATURES_OUTPUT], {backbone.model.graph.input[0].name: batch})[0]
    assert np.abs(clf.logits_batch(images) - head.logits(pooled)).max() < 1e-4
    assert clf.batch_capable and clf.info.labels == ("a", "b", "c")
