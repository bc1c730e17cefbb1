#!/usr/bin/env python
"""Training benchmark: `edgecam train` on 2 classes x 100 images, head only and fine-tuned.

    .venv/bin/python -m edgecam.bench.train                      # CPU, 2 threads (the README table)
    .venv/bin/python -m edgecam.bench.train --device cuda        # on a GPU workstation
    .venv/bin/python -m edgecam.bench.train --arch resnet18      # needs the ResNet-18 weights cached

The dataset is the tests' scene (tests/train_data.py): crops of a region of a real
photo with or without a cat in it, under changing light, noise and camera shake,
saved as JPEG like the daemon saves samples, in .cache/bench-train/. Each run is
the whole command in a fresh process (imports, dataset scan, features, learning
curve, head, fine-tuning, export, INT8 calibration, validation), timed from the
outside; the stage times come from the model's own metadata.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from edgecam.bench.train_data import scene_dataset
from edgecam.model.classifier import Classifier

ROOT = Path(__file__).resolve().parents[2]

CACHE = ROOT / ".cache" / "bench-train"


def dataset(per_class: int) -> Path:
    root = CACHE / f"feeder-{per_class}"
    if not (root / "cat").is_dir() or len(list((root / "cat").glob("*.jpg"))) != per_class:
        scene_dataset(root, per_class, seed=0)
    return root


def run(data: Path, args: argparse.Namespace, finetune: bool) -> dict:
    out = CACHE / ("out-finetune" if finetune else "out-head")
    cmd = [sys.executable, "-m", "edgecam", "train", str(data), "--out", str(out), "--name", "bench",
           "--arch", args.arch, "--size", str(args.size), "--device", args.device,
           "--threads", str(args.threads), "--seed", str(args.seed)]
    if finetune:
        cmd.append("--finetune")
    start = time.monotonic()
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = child.communicate()
    wall = time.monotonic() - start
    if child.returncode != 0:
        raise SystemExit(f"edgecam train failed ({child.returncode}):\n{err[-3000:]}")
    info = Classifier(out / "bench_int8.onnx", threads=1).info
    training, metrics = info.metrics["training"], info.metrics
    return {"wall": wall, "stages": training["stages_s"], "fp32": metrics["accuracy"]["fp32"],
            "int8": metrics["accuracy"]["int8"], "agree": info.agreement["top1"],
            "val": metrics["val_images"], "device": training["device"], "engine": training["engine"],
            "finetuned": training["finetuned"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--threads", type=int, default=2, help="--threads for edgecam train (default 2)")
    parser.add_argument("--arch", default="efficientnet_lite0", choices=("efficientnet_lite0", "resnet18"))
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = dataset(args.per_class)
    load = os.getloadavg()[0]
    rows = []
    for finetune in (False, True):
        res = run(data, args, finetune)
        print(f"  {'fine-tuned' if finetune else 'head only'}: {res['wall']:.1f} s", file=sys.stderr)
        rows.append(f"| {'head + last stages' if finetune else 'head only'} | {res['device']} "
                    f"({res['engine']}) | {res['wall']:.1f} | {res['stages']} | {res['fp32']:.1%} | "
                    f"{res['int8']:.1%} | {res['agree']:.1%} |")
    print(f"\n`edgecam train`, {args.arch} at {args.size} px, 2 classes x {args.per_class} images "
          f"(80/20 split: {res['val']} validation images), {args.threads} threads, {os.cpu_count()} CPUs, "
          f"1-min load {load:.2f} before / {os.getloadavg()[0]:.2f} after\n")
    print("| training | device (features) | wall s | stages s | val acc FP32 | val acc INT8 | INT8 = FP32 |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
