#!/usr/bin/env python
"""Model benchmark: 640x480 BGR frame -> Top-3, the tutorial path vs edgecam's ONNX models.

    .venv/bin/python scripts/bench_model.py                  # main table (threads 2 and 1)
    .venv/bin/python scripts/bench_model.py --compare-layouts  # normalization in numpy vs in graph
    .venv/bin/python scripts/bench_model.py --compare-interp   # cv2 resize: linear / area / area+linear
    .venv/bin/python scripts/bench_model.py --batch --threads 2  # ms per image at batch 1/2/4/8

Each configuration of the main table runs in its own process, so the peak RSS
column is that configuration alone (torch imports included for the tutorial
path). ResNet-18 random weights are used for timing (same graph as ImageNet);
models are built with edgecam's own build code into .cache/bench-models.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgecam.model.build import BuildOptions, build_model, output_paths
from edgecam.model.build.calibration import builtin_photos, builtin_sets
from edgecam.model.classifier import Classifier
from edgecam.model.metadata import LAYOUTS

CACHE = ROOT / ".cache" / "bench-models"
INT8_SIZES = (224, 192, 160, 128)
FRAME_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def frames() -> list[np.ndarray]:
    """Four real photos as 640x480 BGR camera-like frames."""
    photos = dict(builtin_photos())
    return [cv2.resize(photos[name], (640, 480), interpolation=cv2.INTER_AREA) for name in FRAME_PHOTOS]


def timed(step, images: list[np.ndarray], runs: int, warmup: int = 10) -> dict:
    for i in range(warmup):
        step(images[i % len(images)])
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        step(images[i % len(images)])
        samples.append((time.perf_counter() - start) * 1000.0)
    median = float(np.median(samples))
    return {"median": median, "p90": float(np.percentile(samples, 90)), "fps": 1000.0 / median}


def build(arch: str, size: int, layout: str, out: Path) -> tuple[Path, Path]:
    opts = BuildOptions(
        arch=arch, weights="random" if arch == "resnet18" else "imagenet", size=size,
        out_dir=str(out), layout=layout, timing_runs=0,
    )  # default calibration: the same files `edgecam model build` would write there
    build_model(opts)
    return output_paths(opts)


# ---- one configuration, in a child process -------------------------------------------------


def child_torch(threads: int, runs: int) -> dict:
    import torch
    from PIL import Image
    from torchvision import transforms
    from torchvision.models import resnet18

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    model = resnet18().eval()
    tf = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])

    def step(bgr: np.ndarray) -> list:
        image = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        with torch.inference_mode():
            probs = model(tf(image).unsqueeze(0)).softmax(1)[0]
        top = probs.topk(3)
        return list(zip(top.indices.tolist(), top.values.tolist()))

    return timed(step, frames(), runs, warmup=5)


def child_ort(model: str, threads: int, runs: int) -> dict:
    clf = Classifier(model, threads=threads)
    return timed(lambda bgr: clf.classify(bgr, 3), frames(), runs)


def run_child(kind: str, model: str, threads: int, runs: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--model", model,
           "--threads", str(threads), "--runs", str(runs)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- reports --------------------------------------------------------------------------------


def main_table(args: argparse.Namespace) -> None:
    int8 = {size: build("resnet18", size, args.layout, CACHE)[1] for size in INT8_SIZES}
    fp32_224 = output_paths(BuildOptions(arch="resnet18", size=224, out_dir=str(CACHE)))[0]
    configs = [("tutorial: PyTorch eager FP32 + PIL", 224, "torch", "", max(20, args.runs // 4))]
    configs.append(("ORT FP32", 224, "ort", str(fp32_224), args.runs))
    configs += [("ORT INT8", size, "ort", str(int8[size]), args.runs) for size in INT8_SIZES]
    rows, results = [], {}
    load_before = os.getloadavg()[0]
    for threads in args.threads:
        for name, size, kind, model, runs in configs:
            res = run_child(kind, model, threads, runs)
            results[(name, size, threads)] = res
            rows.append(f"| {name} | {size} | {threads} | {res['median']:.2f} | {res['p90']:.2f} "
                        f"| {res['fps']:.0f} | {res['rss_mb']:.0f} |")
            print(f"  measured {name} {size} threads={threads}: {res['median']:.2f} ms", file=sys.stderr)
    print(f"\nResNet-18, 640x480 BGR frame -> Top-3, {args.runs} frames per row "
          f"(tutorial rows: {max(20, args.runs // 4)}), layout {args.layout}, {os.cpu_count()} CPUs, "
          f"1-min load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after\n")
    print("| path | input | threads | median ms | p90 ms | FPS | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if 2 in args.threads:
        base = results[(configs[0][0], 224, 2)]["median"]
        best = results[("ORT INT8", 160, 2)]["median"]
        print(f"\nINT8-160 (2 threads) vs the tutorial path (2 threads): {base / best:.1f}x faster")


def compare_layouts(args: argparse.Namespace) -> None:
    """Normalization in numpy (NCHW float input) vs in the graph (NHWC uint8), INT8 at 160."""
    images = frames()
    print(f"\nNormalization placement, INT8 {args.size}, {args.threads[0]} threads, "
          f"{args.runs} frames x {args.rounds} interleaved rounds (median of round medians)\n")
    print("| model | layout | preprocess ms | preprocess+run ms | FPS |")
    print("|---|---|---|---|---|")
    for arch in ("resnet18", "efficientnet_lite0"):
        clfs = {layout: Classifier(build(arch, args.size, layout, CACHE / f"layout-{layout}")[1],
                                   threads=args.threads[0]) for layout in LAYOUTS}
        pre, full = {k: [] for k in clfs}, {k: [] for k in clfs}
        for _ in range(args.rounds):
            for layout, clf in clfs.items():
                pre[layout].append(timed(clf.preprocessor, images, args.runs)["median"])
                full[layout].append(timed(clf.probabilities, images, args.runs)["median"])
        for layout in clfs:
            total = float(np.median(full[layout]))
            print(f"| {arch} | {layout} | {np.median(pre[layout]):.3f} | {total:.2f} | {1000 / total:.0f} |")


def compare_interp(args: argparse.Namespace) -> None:
    """cv2 INTER_LINEAR vs INTER_AREA vs both (area+linear): speed, closeness to torchvision+PIL, top-1 vs the PIL path."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from edgecam.model.build.weights import load_model

    size = args.size
    fp32 = build("efficientnet_lite0", size, args.layout, CACHE)[0]
    model = load_model("efficientnet_lite0", "imagenet", size)
    tf = transforms.Compose([
        transforms.Resize(int(size / 0.875)), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize(model.mean, model.std),
    ])
    _, views = builtin_sets(1, 60)
    views = [cv2.resize(v, (640, 480), interpolation=cv2.INTER_AREA) for _, v in views]
    refs = []
    with torch.inference_mode():
        for bgr in views:
            x = tf(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))).unsqueeze(0)
            refs.append((x[0].numpy(), int(model.module(x).argmax())))
    print(f"\ncv2 resize interpolation, EfficientNet-Lite0 FP32 {size}, {len(views)} 640x480 views; "
          "reference = torchvision Resize+CenterCrop on PIL (antialiased bilinear)\n")
    print("| interpolation | preprocess ms | mean abs diff vs PIL (normalized) | top-1 = PIL path |")
    print("|---|---|---|---|")
    for name in ("linear", "area", "area+linear"):
        clf = Classifier(fp32, threads=args.threads[0], interpolation=name)
        ms = timed(clf.preprocessor, frames(), args.runs)["median"]
        diffs, same = [], 0
        for bgr, (ref_x, ref_top) in zip(views, refs):
            diffs.append(float(np.abs(_normalized(clf, bgr) - ref_x).mean()))
            same += int(int(np.argmax(clf.probabilities(bgr))) == ref_top)
        print(f"| {name} | {ms:.3f} | {np.mean(diffs):.4f} | {same}/{len(views)} |")


def compare_batch(args: argparse.Namespace) -> None:
    """ms per image at batch 1/2/4/8 (dynamic batch axis), ResNet-18 INT8, interleaved rounds."""
    threads = args.threads[0]
    clf = Classifier(build("resnet18", args.size, args.layout, CACHE)[1], threads=threads)
    assert clf.batch_capable, "rebuild: this model has a fixed batch of 1"
    images = frames()
    crops = [images[i % len(images)][40:440, 120:520] for i in range(8)]  # 400x400 regions
    batches = (1, 2, 4, 8)
    tensors = {n: np.concatenate([clf.preprocessor(c) for c in crops[:n]]) for n in batches}
    run, full = {n: [] for n in batches}, {n: [] for n in batches}
    for _ in range(args.rounds):
        for n in batches:
            # Each timed step handles `runs` images in total, so rows cost the same.
            steps = max(1, args.runs // n)
            run[n].append(timed(lambda _: clf.run_batch(tensors[n]), [0], steps)["median"] / n)
            full[n].append(timed(lambda _: clf.probabilities_batch(crops[:n]), [0], steps)["median"] / n)
    print(f"\nBatch size, ResNet-18 INT8 {args.size}, {threads} threads, {args.rounds} interleaved "
          f"rounds of {args.runs} images per row, {os.cpu_count()} CPUs, 1-min load "
          f"{os.getloadavg()[0]:.2f}. median = median of the round medians; best = the fastest "
          "round (on a shared machine, the one least disturbed by other processes)\n")
    print("| batch | session.run ms/image median | best | crops->probabilities ms/image median | best | "
          "vs batch 1 (median / best) |")
    print("|---|---|---|---|---|---|")
    base, base_best = float(np.median(full[1])), float(np.min(full[1]))
    for n in batches:
        total, best = float(np.median(full[n])), float(np.min(full[n]))
        print(f"| {n} | {np.median(run[n]):.2f} | {np.min(run[n]):.2f} | {total:.2f} | {best:.2f} | "
              f"{total / base:.2f}x / {best / base_best:.2f}x |")


def _normalized(clf: Classifier, bgr: np.ndarray) -> np.ndarray:
    info = clf.info
    rgb = clf.preprocessor.crop(bgr).astype(np.float32) / 255.0
    return ((rgb - np.array(info.mean, np.float32)) / np.array(info.std, np.float32)).transpose(2, 0, 1)


def main() -> None:
    from edgecam.model.build.pipeline import DEFAULT_LAYOUT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="frames timed per configuration")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--size", type=int, default=160, help="size for the comparisons")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (--compare-layouts)")
    parser.add_argument("--layout", default=DEFAULT_LAYOUT, choices=LAYOUTS)
    parser.add_argument("--compare-layouts", action="store_true")
    parser.add_argument("--compare-interp", action="store_true")
    parser.add_argument("--batch", action="store_true", help="ms per image at batch 1/2/4/8")
    parser.add_argument("--child", choices=("torch", "ort"), help=argparse.SUPPRESS)
    parser.add_argument("--model", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.child:
        threads = args.threads[0]
        res = child_torch(threads, args.runs) if args.child == "torch" else child_ort(args.model, threads, args.runs)
        res["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(json.dumps(res))
    elif args.compare_layouts:
        compare_layouts(args)
    elif args.compare_interp:
        compare_interp(args)
    elif args.batch:
        compare_batch(args)
    else:
        main_table(args)


if __name__ == "__main__":
    main()
