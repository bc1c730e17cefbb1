"""INT8 on x86 without VNNI: exact kernels, 7-bit weights, FP32, side by side.

onnxruntime's default INT8 kernels on x86 without VNNI sum pairs of u8 x s8 products in
16 bits with saturation (edgecam/model/cpu.py). Three ways around it, measured on the
same model, the same held-out views and the same frames, interleaved:

* exact kernels: ``session.x64quantprecision=1`` (edgecam's default where needed);
* 7-bit weights: the model quantized with ``reduce_range`` (pair sums fit in 16 bits, so
  the fast kernels stay exact, at the cost of one bit of weight precision everywhere);
* FP32.

The INT8 rows are the model ``edgecam model build`` makes (recipe 4: stem and blocks 0, 1,
3, 4, 8, 9, 11 in FP32, from a per-block sensitivity scan) and, for comparison, recipe 3's
(stem and blocks 0-1 in FP32).

    python -m edgecam.bench.int8 [--holdout 120] [--rounds 5] [--runs 40]

Each row: top-1 agreement with FP32 and top-5 containment on the held-out views (the
bundled photos and augmented views of them, none used for calibration), and ms per
640x480 frame to probabilities (median of the round medians, with the min-max spread).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.bench.common import fmt_spread, host_line, load
from edgecam.bench.model import CACHE, build, frames, timed
from edgecam.export.calibration import builtin_sets
from edgecam.export.quantize import quantize_int8
from edgecam.export.report import agreement
from edgecam.model import cpu
from edgecam.model.classifier import Classifier

ARCH = "efficientnet_lite0"


#: The FP32 layers of build recipe 3, before the per-block sensitivity scan.
RECIPE3_FP32 = ("_conv_stem/", "_blocks.0/", "_blocks.1/")


def requantized(fp32: Path, int8: Path, out: Path, pre_clf: Classifier, calib_count: int, **options: Any) -> Path:
    """The same model quantized with other ``options`` (quantize_int8's), metadata copied."""
    import onnx

    calib, _ = builtin_sets(calib_count, 0)
    quantize_int8(fp32, out, calib, pre_clf.preprocessor, arch=ARCH, **options)
    props = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    model = onnx.load(str(out))
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--holdout", type=int, default=120, help="held-out views for agreement")
    parser.add_argument("--calib", type=int, default=96, help="calibration views (as `model build`)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40, help="frames timed per row and round")
    args = parser.parse_args(argv)
    before = load()
    fp32_path, int8_path = build(ARCH, args.size, "NCHW_float", CACHE)
    fp32 = Classifier(fp32_path, threads=args.threads)
    with tempfile.TemporaryDirectory(prefix="edgecam-int8-") as folder:
        int8_7bit = requantized(fp32_path, int8_path, Path(folder) / "int8_7bit.onnx", fp32, args.calib,
                                reduce_range=True)
        int8_r3 = requantized(fp32_path, int8_path, Path(folder) / "int8_r3.onnx", fp32, args.calib,
                              fp32_layers=RECIPE3_FP32)
        rows = {
            "INT8 recipe 3 (stem, blocks 0-1 FP32), default kernels": Classifier(int8_r3, threads=args.threads,
                                                                               exact_int8=False),
            "INT8 recipe 3, exact kernels": Classifier(int8_r3, threads=args.threads, exact_int8=True),
            "INT8, default kernels": Classifier(int8_path, threads=args.threads, exact_int8=False),
            "INT8, exact kernels (x64quantprecision)": Classifier(int8_path, threads=args.threads, exact_int8=True),
            "INT8 7-bit weights, default kernels": Classifier(int8_7bit, threads=args.threads, exact_int8=False),
            "INT8 7-bit weights, exact kernels": Classifier(int8_7bit, threads=args.threads, exact_int8=True),
            "FP32": fp32,
        }
        _, holdout = builtin_sets(0, args.holdout)
        agree = {name: agreement(fp32, clf, holdout) for name, clf in rows.items()}
        images = frames()
        times: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, clf in rows.items():
                times[name].append(timed(clf.probabilities, images, args.runs)["median"])
    print(f"\nINT8 kernels and weights, {ARCH} {args.size}, {args.threads} threads, "
          f"{len(holdout)} held-out views, {args.rounds} interleaved rounds of {args.runs} frames")
    print(f"{host_line(before)}; default INT8 kernels {'saturate' if cpu.saturates_here() else 'are exact'} here\n")
    print("| model and kernels | top-1 = FP32 | top-5 contains FP32's | ms per frame, median (min-max) |")
    print("|---|---|---|---|")
    for name in rows:
        print(f"| {name} | {agree[name]['top1']:.1%} | {agree[name]['top5']:.1%} | {fmt_spread(times[name])} |")
    fastest_exact = min(("INT8, exact kernels (x64quantprecision)", "INT8 7-bit weights, default kernels"),
                        key=lambda name: (-agree[name]["top1"], float(np.median(times[name]))))
    print(f"\nmost faithful INT8 here, then fastest: {fastest_exact}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
