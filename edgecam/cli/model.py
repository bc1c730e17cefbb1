"""``edgecam model build``, ``edgecam model info``, ``edgecam classify`` and ``edgecam train``.

Build code (torch, onnx) is imported inside the handlers, so registering these
subcommands costs nothing for ``edgecam run``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from edgecam.errors import ModelBuildError, ModelError
from edgecam.export.weights import ARCHS
from edgecam.model.metadata import DEFAULT_LAYOUT, LAYOUTS

DEFAULT_MODEL_DIR = Path("models")
DEFAULT_MODEL = DEFAULT_MODEL_DIR / "resnet18_160_int8.onnx"


def register(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="build edgecam ONNX models")
    model_sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    _register_build(model_sub)
    _register_info(model_sub)
    classify = subparsers.add_parser(
        "classify", help="print the Top-k classes of image files with an edgecam model"
    )
    classify.add_argument("images", nargs="+", metavar="IMAGE")
    classify.add_argument(
        "--model", help=f"model file (default {DEFAULT_MODEL}, else an EfficientNet-Lite0 in models/)"
    )
    classify.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    classify.add_argument("--top", type=int, default=3, help="how many classes to print (default 3)")
    classify.set_defaults(func=run_classify)


def _register_info(model_sub: argparse._SubParsersAction) -> None:
    info = model_sub.add_parser(
        "info", help="print what a model file says about itself (labels, dataset, metrics)",
        description="Reads the edgecam metadata of an ONNX model: labels, input, normalization, "
        "INT8 agreement, and for `edgecam train` models the dataset and validation results.",
    )
    info.add_argument("file", metavar="FILE")
    info.add_argument("--json", action="store_true", help="one JSON object instead of text")
    info.set_defaults(func=run_info)


def _register_build(model_sub: argparse._SubParsersAction) -> None:
    build = model_sub.add_parser(
        "build",
        help="export FP32 and INT8 ONNX models with metadata",
        description="Writes OUT/<arch>_<size>_fp32.onnx and OUT/<arch>_<size>_int8.onnx; "
        "skips the build when both exist with the same options (--force rebuilds).",
    )
    build.add_argument(
        "--arch", default="resnet18", choices=ARCHS + ("auto",),
        help="network (default resnet18); auto = resnet18 ImageNet, or efficientnet_lite0 "
        "when the ResNet-18 weights cannot be had offline",
    )
    build.add_argument(
        "--weights", default="imagenet",
        help="imagenet (default), random (untrained, for tests) or a checkpoint file",
    )
    build.add_argument("--labels", help="labels file, one per line (checkpoints with other classes)")
    build.add_argument("--size", type=int, default=160, help="input size: 96-320, multiple of 32")
    build.add_argument("--calib", help="folder of images or a video for INT8 calibration "
                       "(default: built-in scikit-image photos)")
    build.add_argument("--calib-count", type=int, default=96, help="calibration images (default 96)")
    build.add_argument("--out", default=str(DEFAULT_MODEL_DIR), help="output folder (default models)")
    build.add_argument("--threads", type=int, default=2, help="threads for build and timing")
    build.add_argument("--layout", default=DEFAULT_LAYOUT, choices=LAYOUTS,
                       help=f"where normalization lives (default {DEFAULT_LAYOUT}, measured faster)")
    build.add_argument("--activations", default="uint8", choices=("uint8", "int8"),
                       help="INT8 activation type (default uint8: fastest on x86 onnxruntime)")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument("--trust-pickle", action="store_true",
                       help="allow a --weights file that is a pickled model, not a plain state_dict: "
                       "unpickling runs any code the file holds, so only for files you trust")
    build.set_defaults(func=run_build)


def _setup_logging() -> None:
    """Progress lines from edgecam on stderr; other libraries' INFO chatter stays quiet."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("edgecam").setLevel(logging.INFO)


def run_build(args: argparse.Namespace) -> int:
    from edgecam.export import BuildOptions, build_model, ensure_default_model

    _setup_logging()
    common = dict(
        size=args.size, calib=args.calib, out_dir=args.out, threads=args.threads,
        layout=args.layout, activations=args.activations, calib_count=args.calib_count,
        force=args.force,
    )
    if args.arch == "auto":
        if args.weights != "imagenet" or args.labels:
            raise ModelBuildError("--arch auto builds ImageNet models: drop --weights/--labels")
        from edgecam.export.pipeline import validate

        validate(BuildOptions(**common))  # fail fast (e.g. --size) before any heavy import
        path = ensure_default_model(**common)
        print(f"model: {path}")
        return 0
    report = build_model(BuildOptions(arch=args.arch, weights=args.weights, labels=args.labels,
                                      trust_pickle=args.trust_pickle, **common))
    print(report.format())
    return 0


def run_info(args: argparse.Namespace) -> int:
    import hashlib
    import json

    from edgecam.model.classifier import Classifier
    from edgecam.model.describe import describe, info_dict

    clf = Classifier(args.file, threads=1)  # validates the file as the daemon would
    path = Path(args.file)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    shape = clf.input_dims
    extra = {
        "file": str(path),
        "size": f"{path.stat().st_size / 1e6:.1f} MB",
        "sha256": digest,
        "input": f"{shape} ({'any batch size' if clf.batch_capable else 'batch of 1 only'})",
    }
    if args.json:
        data = {"file": str(path), "bytes": path.stat().st_size, "sha256": digest,
                "input_shape": [d if isinstance(d, int) else str(d) for d in shape],
                "batch_capable": clf.batch_capable, **info_dict(clf.info)}
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(describe(clf.info, extra))
    return 0


def default_model(folder: Path = DEFAULT_MODEL_DIR) -> Path:
    """The model ``classify`` uses without --model: ResNet-18 160, else an EfficientNet-Lite0."""
    if (folder / DEFAULT_MODEL.name).is_file():
        return folder / DEFAULT_MODEL.name
    lite = sorted(folder.glob("efficientnet_lite0_*_int8.onnx"))
    preferred = [p for p in lite if p.name == "efficientnet_lite0_160_int8.onnx"]
    if preferred or lite:
        return (preferred or lite)[0]
    raise ModelError(
        f"no --model given and neither {folder / DEFAULT_MODEL.name} nor an EfficientNet-Lite0 "
        f"INT8 model is in {folder}/: build one with `edgecam model build --arch auto`"
    )


def run_classify(args: argparse.Namespace) -> int:
    from edgecam.model.classifier import Classifier, is_untrained

    if args.top < 1:
        raise ModelError(f"--top {args.top}: must be at least 1")
    path = Path(args.model) if args.model else default_model()
    clf = Classifier(path, threads=args.threads)
    info = clf.info
    print(f"model: {path} ({info.name}, {info.num_classes} classes, {args.threads} threads)")
    if is_untrained(info):
        print("edgecam: warning: this model has random (untrained) weights: "
              "its labels are meaningless", file=sys.stderr)
    failed = 0
    for image_path in args.images:
        image, problem = _read_image(image_path)
        if image is None:
            print(f"edgecam: error: cannot read image {image_path}: {problem}", file=sys.stderr)
            failed += 1
            continue
        print(_format_result(clf, image_path, image, args.top))
    return 2 if failed else 0


def _read_image(path: str):  # -> (BGR ndarray | None, problem)
    import cv2

    if not Path(path).is_file():
        return None, "no such file"
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # we report bad files
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        return None, "not an image format OpenCV can decode (or truncated)"
    return image, ""


def _format_result(clf, image_path: str, image, k: int) -> str:  # clf: Classifier
    start = time.perf_counter()
    top = clf.classify(image, k)
    ms = (time.perf_counter() - start) * 1000.0
    height, width = image.shape[:2]
    lines = [f"{image_path}  ({width}x{height})  {ms:.2f} ms"]
    lines += [f"  {rank}. {label.label}  {label.score:.4f}" for rank, label in enumerate(top, 1)]
    return "\n".join(lines)
