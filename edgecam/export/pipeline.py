"""``edgecam model build``: weights -> FP32 ONNX -> INT8 ONNX, metadata, checks, report."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecam.errors import ModelBuildError
from edgecam.export.calibration import calibration_sets
from edgecam.export.export import export_onnx
from edgecam.export.metadata import is_up_to_date, read_props, write_metadata
from edgecam.export.quantize import ACTIVATIONS, quantize_int8
from edgecam.export.report import BuildReport, agreement, time_ms
from edgecam.export.weights import (
    ARCHS,
    TorchModel,
    WeightsUnavailableError,
    file_digest,
    load_model,
)
from edgecam.model.metadata import DEFAULT_LAYOUT, LAYOUTS, info_from_props
from edgecam.model.types import ModelInfo

log = logging.getLogger(__name__)

SIZES = range(96, 321, 32)
RECIPE = 4  # bump when export/quantization changes, so cached outputs are rebuilt
# 3: dynamic batch axis (batch-1 files from recipe 2 still load and run)


@dataclass(frozen=True)
class BuildOptions:
    arch: str = "resnet18"
    weights: str = "imagenet"  # "imagenet", "random" or a checkpoint path
    labels: str | None = None  # labels file, one per line
    size: int = 160
    calib: str | None = None  # folder of images or a video; None = built-in photos
    out_dir: str = "models"
    threads: int = 2
    layout: str = DEFAULT_LAYOUT
    activations: str = "uint8"
    calib_count: int = 96
    holdout_count: int = 40
    timing_runs: int = 30  # 0 skips the speed measurement
    force: bool = False
    trust_pickle: bool = False  # allow unrestricted unpickling of --weights (runs its code)


def validate(opts: BuildOptions) -> None:
    """Check the options before any heavy import; ModelBuildError names the bad one."""
    if opts.arch not in ARCHS:
        raise ModelBuildError(f"--arch {opts.arch!r}: choose from {', '.join(ARCHS)} or auto")
    if opts.size not in SIZES:
        raise ModelBuildError(
            f"--size {opts.size} is not supported: use a multiple of 32 from 96 to 320 "
            f"({', '.join(map(str, SIZES))})"
        )
    if opts.layout not in LAYOUTS:
        raise ModelBuildError(f"--layout {opts.layout!r}: choose from {', '.join(LAYOUTS)}")
    if opts.activations not in ACTIVATIONS:
        raise ModelBuildError(f"--activations {opts.activations!r}: choose uint8 or int8")
    if opts.threads < 1:
        raise ModelBuildError(f"--threads {opts.threads}: must be at least 1")
    if opts.calib_count < 1 or opts.holdout_count < 0:
        raise ModelBuildError("calibration needs at least 1 image and a non-negative hold-out")
    if opts.labels and not os.path.isfile(opts.labels):
        raise ModelBuildError(f"--labels {opts.labels}: no such file")
    if opts.calib and not os.path.exists(opts.calib):
        raise ModelBuildError(f"--calib {opts.calib}: no such folder or video file")


def output_paths(opts: BuildOptions) -> tuple[Path, Path]:
    out = Path(opts.out_dir)
    stem = f"{opts.arch}_{opts.size}"
    return out / f"{stem}_fp32.onnx", out / f"{stem}_int8.onnx"



def build_key(opts: BuildOptions) -> dict[str, Any]:
    """The options that determine the output; equal keys mean an identical build."""
    weights = opts.weights
    if weights not in ("imagenet", "random"):
        if not os.path.isfile(weights):
            raise ModelBuildError(
                f"--weights {weights!r} is not 'imagenet', 'random' or an existing checkpoint file"
            )
        weights = "sha256:" + file_digest(weights)
    return {
        "recipe": RECIPE,
        "arch": opts.arch,
        "weights": weights,
        "labels": file_digest(opts.labels) if opts.labels else None,
        "size": opts.size,
        "layout": opts.layout,
        "activations": opts.activations,
        "calib": os.path.abspath(opts.calib) if opts.calib else "builtin",
        "calib_count": opts.calib_count,
        "holdout_count": opts.holdout_count,
    }


def up_to_date(opts: BuildOptions) -> bool:
    key = build_key(opts)
    return all(is_up_to_date(path, key) for path in output_paths(opts))


def build_model(opts: BuildOptions) -> BuildReport:
    """Build (or reuse) ``<arch>_<size>_fp32.onnx`` and ``..._int8.onnx`` in ``opts.out_dir``."""
    validate(opts)
    fp32_path, int8_path = output_paths(opts)
    key = build_key(opts)
    if not opts.force and up_to_date(opts):
        log.info("%s and %s are up to date: not rebuilding", fp32_path.name, int8_path.name)
        return _existing_report(opts, fp32_path, int8_path)
    import torch

    torch.set_num_threads(opts.threads)
    model = load_model(opts.arch, opts.weights, opts.size, opts.labels, opts.trust_pickle)
    fp32_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=fp32_path.parent) as tmp:
        report = _build_into(Path(tmp), model, opts, key, fp32_path, int8_path)
        # Replace the outputs only once both are complete and checked.
        os.replace(Path(tmp) / fp32_path.name, fp32_path)
        os.replace(Path(tmp) / int8_path.name, int8_path)
    log.info("wrote %s and %s", fp32_path, int8_path)
    return report


def _info(model: TorchModel, opts: BuildOptions, precision: str, agree: dict) -> ModelInfo:
    return ModelInfo(
        name=f"{opts.arch}_{opts.size}_{precision}",
        arch=opts.arch,
        precision=precision,
        input_size=opts.size,
        labels=model.labels,
        trained=model.trained,
        weights=model.weights,
        mean=model.mean,
        std=model.std,
        color_order="RGB",
        layout=opts.layout,
        agreement=agree,
    )


def _build_into(
    tmp: Path, model: TorchModel, opts: BuildOptions, key: dict, fp32_final: Path, int8_final: Path
) -> BuildReport:
    from edgecam.model import cpu
    from edgecam.model.classifier import Classifier

    fp32, int8 = tmp / fp32_final.name, tmp / int8_final.name
    export_onnx(model, opts.size, opts.layout, fp32)
    write_metadata(fp32, _info(model, opts, "fp32", {}), key)
    fp32_clf = Classifier(fp32, threads=opts.threads)
    calib, holdout = calibration_sets(opts.calib, opts.calib_count, opts.holdout_count)
    quantize_int8(fp32, int8, calib, fp32_clf.preprocessor, opts.activations, opts.arch)
    write_metadata(int8, _info(model, opts, "int8", {}), key)
    # The figure a Pi sees: exact INT8 sums (this host's default kernels where they are exact,
    # onnxruntime's exact kernels where they would saturate: edgecam/model/cpu.py).
    host = cpu.auto()
    int8_clf = Classifier(int8, threads=opts.threads, exact_int8=host.exact)
    log.info("checking INT8 against FP32 on %d held-out images", len(holdout))
    agree = agreement(fp32_clf, int8_clf, holdout)
    write_metadata(int8, _info(model, opts, "int8", agree), key)
    report = BuildReport(fp32_final, int8_final, opts.size, opts.layout, opts.threads, agree, simd=host.simd)
    saturating = Classifier(int8, threads=opts.threads, exact_int8=False) if host.exact else None
    if saturating is not None:
        report.saturating_agreement = agreement(fp32_clf, saturating, holdout)
    if opts.timing_runs > 0:
        frame = _timing_frame(holdout or calib)
        report.fp32_ms = time_ms(fp32_clf, frame, opts.timing_runs)
        report.int8_ms = time_ms(int8_clf, frame, opts.timing_runs)
        if saturating is not None:
            report.saturating_ms = time_ms(saturating, frame, opts.timing_runs)
    if not model.trained:
        report.note = "weights are random (untrained): labels are meaningless, for testing only"
    return report


def _timing_frame(images: list) -> Any:
    import cv2

    return cv2.resize(images[0][1], (640, 480), interpolation=cv2.INTER_AREA)


def _existing_report(opts: BuildOptions, fp32: Path, int8: Path) -> BuildReport:
    props = read_props(int8) or {}
    info = info_from_props(props, int8.name)
    return BuildReport(
        fp32, int8, opts.size, opts.layout, opts.threads, dict(info.agreement), skipped=True
    )


def ensure_default_model(
    out_dir: str = "models",
    size: int = 160,
    threads: int = 2,
    force: bool = False,
    quiet: bool = False,
    **extra: Any,
) -> Path:
    """The default model (docs/model.md): ResNet-18 ImageNet INT8, or EfficientNet-Lite0 when offline.

    Returns the INT8 path actually available; up-to-date outputs are reused.
    ``extra`` are further BuildOptions fields (calib, layout, activations...).
    """
    resnet = BuildOptions(
        arch="resnet18", weights="imagenet", size=size, out_dir=out_dir, threads=threads,
        force=force, **extra,
    )
    lite = dataclasses.replace(resnet, arch="efficientnet_lite0")
    if not force and up_to_date(resnet):
        return output_paths(resnet)[1]
    from edgecam.export.weights import resnet18_cache_path

    cached = resnet18_cache_path().exists()
    if not cached and not force and up_to_date(lite):
        log.warning(
            "ResNet-18 ImageNet weights are not cached (%s): using the existing EfficientNet-Lite0 "
            "model %s (--force retries ResNet-18)", resnet18_cache_path(), output_paths(lite)[1]
        )
        return output_paths(lite)[1]
    try:
        return _build_and_print(resnet, quiet)
    except WeightsUnavailableError as err:
        log.warning(
            "ResNet-18 ImageNet weights cannot be had offline (put %s there to use them): "
            "building EfficientNet-Lite0 with its packaged ImageNet weights instead",
            resnet18_cache_path(),
        )
        log.debug("ResNet-18 weights: %s", err)
        return _build_and_print(lite, quiet)


def _build_and_print(opts: BuildOptions, quiet: bool) -> Path:
    report = build_model(opts)
    if not quiet:
        print(report.format())
    return report.int8_path

