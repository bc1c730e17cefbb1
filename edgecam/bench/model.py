#!/usr/bin/env python
"""Model benchmark: 640x480 BGR frame -> Top-3, the tutorial path vs edgecam's ONNX models.

    .venv/bin/python -m edgecam.bench.model                  # main table (threads 2 and 1, 5 runs per row)
    .venv/bin/python -m edgecam.bench.model --repeat 3 --runs 100 --threads 2   # a shorter main table
    .venv/bin/python -m edgecam.bench.model --compare-layouts  # normalization in numpy vs in graph
    .venv/bin/python -m edgecam.bench.model --compare-interp   # cv2 resize: linear / area / area+linear
    .venv/bin/python -m edgecam.bench.model --batch --threads 2  # ms per image at batch 1/2/4/8

Each configuration of the main table runs in its own process, --repeat times,
interleaved; the table gives the median of the runs with their min-max, and the
speed-up ratios are taken run by run. Peak RSS is each child's own VmHWM (torch
imports included for the tutorial paths). The tutorial rows are torchvision's
ResNet-18 on PIL preprocessing: scripted (torch.jit.script, torch.no_grad,
torch.set_num_threads, as edgecam's seeds ran it) and eager (torch.inference_mode,
one inter-op thread). ResNet-18 random weights are used for timing (same graph
as ImageNet); models are built with edgecam's own build code into
.cache/bench-models.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecam.bench.common import fmt, fmt_spread, host_line, load, peak_rss_mb, spread
from edgecam.export import BuildOptions, build_model, output_paths
from edgecam.export.calibration import builtin_photos, builtin_sets
from edgecam.model.classifier import Classifier
from edgecam.model.metadata import LAYOUTS

ROOT = Path(__file__).resolve().parents[2]

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


def _torch_tutorial(threads: int, scripted: bool):
    """torchvision ResNet-18 + PIL preprocessing, as the tutorials (and edgecam's seeds) run it."""
    import torch
    from PIL import Image
    from torchvision import transforms
    from torchvision.models import resnet18

    torch.set_num_threads(threads)
    grad_off: Any
    if scripted:  # the seeds' path: torch.jit.script, torch.no_grad(), set_num_threads
        model, grad_off = torch.jit.script(resnet18().eval()), torch.no_grad
    else:
        torch.set_num_interop_threads(1)
        model, grad_off = resnet18().eval(), torch.inference_mode
    tf = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])

    def step(bgr: np.ndarray) -> list:
        image = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        with grad_off():
            probs = model(tf(image).unsqueeze(0)).softmax(1)[0]
        top = probs.topk(3)
        return list(zip(top.indices.tolist(), top.values.tolist()))

    return step


def child_torch(threads: int, runs: int, scripted: bool) -> dict:
    # TorchScript's profiling executor optimizes after the first calls: warm up past that.
    return timed(_torch_tutorial(threads, scripted), frames(), runs, warmup=10 if scripted else 5)


def child_ort(model: str, threads: int, runs: int) -> dict:
    clf = Classifier(model, threads=threads)
    return timed(lambda bgr: clf.classify(bgr, 3), frames(), runs)


def run_child(kind: str, model: str, threads: int, runs: int) -> dict:
    cmd = [sys.executable, "-m", "edgecam.bench.model", "--child", kind, "--model", model,
           "--threads", str(threads), "--runs", str(runs)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- reports --------------------------------------------------------------------------------

TORCHSCRIPT, EAGER = "tutorial: TorchScript FP32 + PIL", "tutorial: PyTorch eager FP32 + PIL"
# (numerator row, denominator row): "denominator is N x faster than numerator"
RATIOS = [((TORCHSCRIPT, 224), ("ORT INT8", 160)), ((EAGER, 224), ("ORT INT8", 160)),
          ((TORCHSCRIPT, 224), ("ORT FP32", 224)), (("ORT FP32", 224), ("ORT INT8", 224))]


def main_table(args: argparse.Namespace) -> None:
    int8 = {size: build("resnet18", size, args.layout, CACHE)[1] for size in INT8_SIZES}
    fp32_224 = output_paths(BuildOptions(arch="resnet18", size=224, out_dir=str(CACHE)))[0]
    torch_runs = max(20, args.runs // 4)
    configs = [(TORCHSCRIPT, 224, "torchscript", "", torch_runs), (EAGER, 224, "torch", "", torch_runs),
               ("ORT FP32", 224, "ort", str(fp32_224), args.runs)]
    configs += [("ORT INT8", size, "ort", str(int8[size]), args.runs) for size in INT8_SIZES]
    load_before = load()
    results: dict[tuple, list[dict]] = {}
    for rep in range(args.repeat):  # interleaved, so drifting load hits every row alike
        for threads in args.threads:
            for name, size, kind, model, runs in configs:
                res = run_child(kind, model, threads, runs)
                results.setdefault((name, size, threads), []).append(res)
                print(f"  run {rep + 1}/{args.repeat} {name} {size} threads={threads}: {res['median']:.2f} ms, "
                      f"load {load()}", file=sys.stderr)
    print(f"\nResNet-18, 640x480 BGR frame -> Top-3, {args.runs} frames per run (tutorial rows: {torch_runs}), "
          f"{args.repeat} runs per row, each in a fresh process, layout {args.layout}")
    print(host_line(load_before))
    print_main_table(results, [(name, size) for name, size, *_ in configs], args.threads)


def print_main_table(results: dict[tuple, list[dict]], rows: list[tuple[str, int]], threads: list[int]) -> None:
    print("median ms, p90 ms and FPS: median over the runs of each run's figure (min-max over runs in brackets); "
          "peak RSS: the largest run's own VmHWM\n")
    print("| path | input | threads | median ms | p90 ms | FPS | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for count in threads:
        for name, size in rows:
            runs = results[(name, size, count)]
            print(f"| {name} | {size} | {count} | {fmt_spread(r['median'] for r in runs)} "
                  f"| {fmt(spread(r['p90'] for r in runs)[1])} | {fmt(spread(r['fps'] for r in runs)[1], 0)} "
                  f"| {max(r['rss_mb'] for r in runs):.0f} |")
    print()
    for count in threads:
        for slow, fast in RATIOS:
            per_run = [a["median"] / b["median"] for a, b in
                       zip(results[(*slow, count)], results[(*fast, count)])]
            print(f"{fast[0]} {fast[1]} vs {slow[0]} {slow[1]}, {count} thread{'s' if count > 1 else ''}: "
                  f"{fmt_spread(per_run, 1, 'x')} faster (same-round ratios: median (min-max) of {len(per_run)})")


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
        pre: dict[str, list[float]] = {k: [] for k in clfs}
        full: dict[str, list[float]] = {k: [] for k in clfs}
        for _ in range(args.rounds):
            for layout, clf in clfs.items():
                pre[layout].append(timed(clf.preprocessor, images, args.runs)["median"])
                full[layout].append(timed(clf.probabilities, images, args.runs)["median"])
        for layout in clfs:
            total = float(np.median(full[layout]))
            print(f"| {arch} | {layout} | {np.median(pre[layout]):.3f} | {total:.2f} | {1000 / total:.0f} |")


def compare_interp(args: argparse.Namespace) -> None:
    """cv2 INTER_LINEAR vs INTER_AREA vs both (area+linear): speed, closeness to torchvision+PIL,
    top-1 vs the PIL path."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from edgecam.export.weights import load_model

    size = args.size
    fp32 = build("efficientnet_lite0", size, args.layout, CACHE)[0]
    model = load_model("efficientnet_lite0", "imagenet", size)
    tf = transforms.Compose([
        transforms.Resize(int(size / 0.875)), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize(model.mean, model.std),
    ])
    _, views = builtin_sets(1, 60)
    resized = [cv2.resize(v, (640, 480), interpolation=cv2.INTER_AREA) for _, v in views]
    refs = []
    with torch.inference_mode():
        for bgr in resized:
            x = tf(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))).unsqueeze(0)
            refs.append((x[0].numpy(), int(model.module(x).argmax())))
    print(f"\ncv2 resize interpolation, EfficientNet-Lite0 FP32 {size}, {len(resized)} 640x480 views; "
          "reference = torchvision Resize+CenterCrop on PIL (antialiased bilinear)\n")
    print("| interpolation | preprocess ms | mean abs diff vs PIL (normalized) | top-1 = PIL path |")
    print("|---|---|---|---|")
    for name in ("linear", "area", "area+linear"):
        clf = Classifier(fp32, threads=args.threads[0], interpolation=name)
        ms = timed(clf.preprocessor, frames(), args.runs)["median"]
        diffs, same = [], 0
        for bgr, (ref_x, ref_top) in zip(resized, refs):
            diffs.append(float(np.abs(_normalized(clf, bgr) - ref_x).mean()))
            same += int(int(np.argmax(clf.probabilities(bgr))) == ref_top)
        print(f"| {name} | {ms:.3f} | {np.mean(diffs):.4f} | {same}/{len(resized)} |")


def compare_batch(args: argparse.Namespace) -> None:
    """ms per image at batch 1/2/4/8 (dynamic batch axis), ResNet-18 INT8, interleaved rounds."""
    threads = args.threads[0]
    clf = Classifier(build("resnet18", args.size, args.layout, CACHE)[1], threads=threads)
    assert clf.batch_capable, "rebuild: this model has a fixed batch of 1"
    images = frames()
    crops = [images[i % len(images)][40:440, 120:520] for i in range(8)]  # 400x400 regions
    batches = (1, 2, 4, 8)
    tensors = {n: np.concatenate([clf.preprocessor(c) for c in crops[:n]]) for n in batches}
    run: dict[int, list[float]] = {n: [] for n in batches}
    full: dict[int, list[float]] = {n: [] for n in batches}
    for _ in range(args.rounds):
        for n in batches:
            # Each timed step handles `runs` images in total, so rows cost the same.
            steps = max(1, args.runs // n)
            dummy = [np.zeros(1)]  # timed() calls fn(item) per item; the batch is fixed
            run[n].append(timed(lambda _, n=n: clf.run_batch(tensors[n]), dummy, steps)["median"] / n)
            full[n].append(timed(lambda _, n=n: clf.probabilities_batch(crops[:n]), dummy, steps)["median"] / n)
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
    from edgecam.export.pipeline import DEFAULT_LAYOUT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="frames timed per configuration")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--repeat", type=int, default=5, help="runs per configuration (main table), interleaved")
    parser.add_argument("--size", type=int, default=160, help="size for the comparisons")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (--compare-layouts)")
    parser.add_argument("--layout", default=DEFAULT_LAYOUT, choices=LAYOUTS)
    parser.add_argument("--compare-layouts", action="store_true")
    parser.add_argument("--compare-interp", action="store_true")
    parser.add_argument("--batch", action="store_true", help="ms per image at batch 1/2/4/8")
    parser.add_argument("--child", choices=("torch", "torchscript", "ort"), help=argparse.SUPPRESS)
    parser.add_argument("--model", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.child:
        threads = args.threads[0]
        if args.child == "ort":
            res = child_ort(args.model, threads, args.runs)
        else:
            res = child_torch(threads, args.runs, scripted=args.child == "torchscript")
        res["rss_mb"] = peak_rss_mb()  # this child's own peak, not its parent's (see bench_common)
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
