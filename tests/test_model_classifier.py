"""The runtime classifier on real models and real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecam.export.calibration import augment
from edgecam.model.classifier import Classifier
from edgecam.model.preprocess import Preprocessor

CAT = {"Egyptian cat", "tabby", "tiger cat"}
COFFEE = {"espresso", "cup"}
# Mean |cv2 - torchvision| on the normalized tensor, in std units (one 8-bit step is
# 0.0157 for EfficientNet-Lite's std of 128/255). Measured with "area+linear": 0.015 on
# average over these photos (0.010 on 640x480 frames), worst 0.031 on the fine grass
# texture (plain INTER_LINEAR: 0.084 there).
MEAN_TOLERANCE = 0.02
MAX_TOLERANCE = 0.035


def _photo(real_photos, name: str) -> np.ndarray:
    return dict(real_photos)[name]


def _natural_views(real_photos) -> list[tuple[str, np.ndarray]]:
    """Each photo as is, as a 640x480 camera-like frame, and two random views."""
    rng = np.random.default_rng(7)
    views = []
    for name, image in real_photos:
        views.append((name, image))
        views.append((f"{name}@640x480", cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA)))
        views += [(f"{name}#{i}", augment(image, rng)) for i in range(2)]
    return views


@pytest.mark.parametrize("frame", ["original", "640x480"])
def test_preprocessing_matches_torchvision(effnet_models, real_photos, frame):
    from PIL import Image
    from torchvision import transforms

    info = Classifier(effnet_models.fp32).info
    size = info.input_size
    reference = transforms.Compose([
        transforms.Resize(int(size / 0.875)), transforms.CenterCrop(size),
        transforms.ToTensor(), transforms.Normalize(info.mean, info.std),
    ])
    pre = Preprocessor(info)
    diffs = []
    for _, bgr in real_photos:
        if frame == "640x480":
            bgr = cv2.resize(bgr, (640, 480), interpolation=cv2.INTER_AREA)
        ours = pre(bgr)
        theirs = reference(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))).numpy()[None]
        assert ours.shape == theirs.shape == (1, 3, size, size) and ours.dtype == np.float32
        diffs.append(float(np.abs(ours - theirs).mean()))
    print(f"{frame}: mean abs diff vs torchvision per photo: max {max(diffs):.4f}, mean {np.mean(diffs):.4f}")
    assert np.mean(diffs) < MEAN_TOLERANCE and max(diffs) < MAX_TOLERANCE


def test_effnet_int8_agrees_with_fp32_on_natural_photos(effnet_models, real_photos):
    fp32 = Classifier(effnet_models.fp32, threads=2)
    int8 = Classifier(effnet_models.int8, threads=2)
    views = _natural_views(real_photos)
    same = [int(np.argmax(fp32.probabilities(v)) == np.argmax(int8.probabilities(v))) for _, v in views]
    share = sum(same) / len(same)
    print(f"EfficientNet-Lite0 160: INT8 top-1 == FP32 top-1 on {sum(same)}/{len(same)} = {share:.1%}")
    assert share >= 0.90


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_effnet_knows_the_cat_and_the_coffee(effnet_models, real_photos, precision):
    clf = Classifier(getattr(effnet_models, precision), threads=2)
    cat = {label.label for label in clf.classify(_photo(real_photos, "chelsea"), 3)}
    coffee = {label.label for label in clf.classify(_photo(real_photos, "coffee"), 3)}
    assert cat & CAT, f"chelsea top-3 {cat}"
    assert coffee & COFFEE, f"coffee top-3 {coffee}"


def test_probabilities_and_top_k(effnet_models, real_photos):
    clf = Classifier(effnet_models.int8, threads=1)
    probs = clf.probabilities(_photo(real_photos, "coffee"))
    assert probs.dtype == np.float32 and probs.shape == (1000,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4) and probs.min() >= 0
    top = clf.top_k(probs, 5)
    assert [t.index for t in top] == list(np.argsort(probs)[::-1][:5])
    assert all(a.score >= b.score for a, b in zip(top, top[1:]))
    assert top[0].label == clf.info.labels[top[0].index] == "espresso"
    assert len(clf.top_k(probs, 5000)) == 1000 and len(clf.top_k(probs, 0)) == 1
    assert clf.classify(_photo(real_photos, "coffee"), k=2) == top[:2]


@pytest.mark.parametrize("shape", [(10, 12, 3), (1080, 1920, 3), (480, 640), (240, 320, 4), (2000, 90, 3)])
def test_any_frame_size_and_channels(resnet_random_models, shape):
    clf = Classifier(resnet_random_models.int8, threads=1)
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    probs = clf.probabilities(frame)
    assert probs.shape == (1000,) and np.isfinite(probs).all()
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)


def test_bad_frames_raise_value_error(resnet_random_models):
    clf = Classifier(resnet_random_models.int8, threads=1)
    with pytest.raises(ValueError, match="uint8"):
        clf.probabilities(np.zeros((48, 48, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        clf.probabilities(np.zeros((48, 48, 5), np.uint8))


def test_grey_frame_equals_its_bgr_version(resnet_random_models, real_photos):
    clf = Classifier(resnet_random_models.int8, threads=1)
    grey = cv2.cvtColor(_photo(real_photos, "chelsea"), cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(
        clf.probabilities(grey), clf.probabilities(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    )


@pytest.mark.parametrize("mode", ["linear", "area", "area+linear"])
def test_interpolation_modes_keep_geometry(effnet_models, real_photos, mode):
    clf = Classifier(effnet_models.int8, threads=1, interpolation=mode)
    assert clf.preprocessor.crop(_photo(real_photos, "rocket")).shape == (160, 160, 3)
    top = {label.label for label in clf.classify(_photo(real_photos, "chelsea"), 3)}
    assert top & CAT


def test_extreme_aspect_ratios_stay_small_in_memory() -> None:
    import tracemalloc

    from edgecam.model.preprocess import resize_center_crop

    strip = np.random.default_rng(0).integers(0, 255, (2, 4000, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        crop = resize_center_crop(strip, 160)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert crop.shape == (160, 160, 3)
    assert peak < 2 * 2**20, f"{peak / 2**20:.1f} MiB for a 4000x2 strip (unclamped: ~190 MiB)"
    # Up to 3:1 nothing is cut (a 21:9 camera gets torchvision's exact transform);
    # beyond, the centre is kept.
    from edgecam.model.preprocess import _clamp_aspect

    wide = np.zeros((210, 490, 3), np.uint8)
    assert _clamp_aspect(wide) is wide
    strip[:, 1997:2003] = 255
    centre = _clamp_aspect(strip)
    assert centre.shape == (2, 6, 3) and (centre == 255).all()
