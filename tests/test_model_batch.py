"""The batch API: one run for N crops of any sizes, equal to N single runs.

Models exported since build recipe 3 have a dynamic batch axis; files exported
before it (fixed batch 1) must still load and answer the batch API by looping.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edgecam.errors import ModelError
from edgecam.model.classifier import Classifier

# Kernels may block a batch differently from a single image and sum in another order:
# 1e-4 on logits of magnitude ~10 is far below anything that changes a class. Measured
# here (x86, onnxruntime 1.32): identical, for FP32 and INT8.
ATOL = {"fp32": 1e-4, "int8": 1e-4}


def _crops(real_photos) -> list[np.ndarray]:
    """Five region crops of different sizes and kinds (colour, grey, BGRA, tiny)."""
    photos = dict(real_photos)
    cat, coffee, camera = photos["chelsea"], photos["coffee"], photos["camera"]
    return [
        cat[50:250, 100:380],
        coffee,
        cv2.cvtColor(camera, cv2.COLOR_BGR2GRAY)[100:400, 50:300],
        cv2.cvtColor(photos["rocket"], cv2.COLOR_BGR2BGRA),
        cat[10:40, 10:70],
    ]


def fixed_batch_copy(src: Path, dst: Path) -> Path:
    """``src`` with its batch axis pinned to 1: what `model build` wrote before recipe 3."""
    proto = onnx.load(str(src))
    for value in (*proto.graph.input, *proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    del proto.graph.value_info[:]
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("which", ["resnet_random_models", "effnet_models"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_batch_equals_single_runs(which, precision, request, real_photos):
    pair = request.getfixturevalue(which)
    clf = Classifier(getattr(pair, precision), threads=2)
    assert clf.batch_capable
    shape = clf.input_dims
    assert isinstance(shape[0], str), shape
    crops = _crops(real_photos)
    batch = clf.logits_batch(crops)
    assert batch.shape == (len(crops), clf.info.num_classes) and batch.dtype == np.float32
    single = np.stack([clf.logits(crop) for crop in crops])
    worst = float(np.abs(batch - single).max())
    print(f"{which} {precision}: max |batch - single| {worst:.2e}")
    assert worst <= ATOL[precision]
    assert (batch.argmax(1) == single.argmax(1)).all()
    probs = clf.probabilities_batch(crops)
    assert probs.shape == batch.shape and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.allclose(probs[1], clf.probabilities(crops[1]), atol=1e-5)


def test_batch_of_one_and_of_none(resnet_random_models, real_photos):
    clf = Classifier(resnet_random_models.int8, threads=2)
    crop = _crops(real_photos)[0]
    assert np.array_equal(clf.logits_batch([crop])[0], clf.logits(crop))
    empty = clf.logits_batch([])
    assert empty.shape == (0, 1000) and clf.probabilities_batch([]).shape == (0, 1000)
    with pytest.raises(ValueError, match="uint8"):
        clf.logits_batch([crop, crop.astype(np.float32)])


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_fixed_batch_model_still_loads_and_loops(precision, resnet_random_models, real_photos, tmp_path):
    dynamic = Classifier(getattr(resnet_random_models, precision), threads=2)
    old = Classifier(fixed_batch_copy(dynamic.path, tmp_path / "old.onnx"), threads=2)
    assert old.input_dims[0] == 1
    assert not old.batch_capable and old.info == dynamic.info
    crops = _crops(real_photos)
    looped = old.logits_batch(crops)
    assert looped.shape == (len(crops), 1000)
    assert np.abs(looped - dynamic.logits_batch(crops)).max() <= ATOL[precision]
    tensor = np.concatenate([old.preprocessor(c) for c in crops[:2]])
    with pytest.raises(ModelError, match="batch of 1"):
        old.run_batch(tensor)
    assert np.abs(dynamic.run_batch(tensor) - looped[:2]).max() <= ATOL[precision]
