"""Training benchmark: `edgecam train` on 2 classes x 100 images, torch path vs torch-free, side by side.

    .venv/bin/python -m edgecam.bench.train                      # head only: torch vs no torch, 3 runs each
    .venv/bin/python -m edgecam.bench.train --runs 5 --finetune  # also the fine-tuned (torch) row
    .venv/bin/python -m edgecam.bench.train --notorch-python .cache/notorch-venv-*/bin/python
    .venv/bin/python -m edgecam.bench.train --device cuda        # the torch rows on a GPU
    .venv/bin/python -m edgecam.bench.train --baseline-src /tmp/base  # + an older tree's torch path
    .venv/bin/python -m edgecam.bench.train --per-class 15 --seeds 10  # accuracy over 10 splits

The dataset is the tests' scene (edgecam/bench/train_data.py): crops of a region of a
real photo with or without a cat in it, under changing light, noise and camera shake,
saved as JPEG like the daemon saves samples, in .cache/bench-train/. Each run is the
whole command in a fresh process pinned to ``--cpus`` CPUs (imports, dataset scan,
features, learning curve, head, export, INT8 calibration, validation), timed from the
outside; its peak RSS is the child's own VmHWM (polled from /proc, not ru_maxrss,
which a child forked from a large parent inherits). The variants run interleaved
(torch, no torch, torch, ...) so a noisy neighbour hits both alike. The torch-free
runs cut the backbone from the FP32 model ``edgecam model build`` writes (built once
into .cache/test-models/ with torch); both use the same seed, so the same split.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecam.bench.common import fmt_spread, host_line, load, spread
from edgecam.bench.train_data import scene_dataset

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "bench-train"
POLL_S = 0.02


@dataclass
class Run:
    returncode: int
    wall: float  # seconds
    peak_mb: float  # the child's VmHWM, MiB
    stdout: str
    stderr: str


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def measured(cmd: list[str], cpus: int = 0, timeout: float = 900,
             setup: Callable[[int], None] | None = None, **popen: Any) -> Run:
    """Run ``cmd``; its wall time and peak RSS (VmHWM, polled until it exits).

    ``cpus`` > 0 pins the child to the first ``cpus`` CPUs this process may use;
    ``setup(pid)`` runs right after the start (renice, prlimit: no preexec_fn, which
    is unsafe in a process with threads). Python's start-up takes far longer than that.
    """
    start = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    if cpus > 0:
        os.sched_setaffinity(child.pid, sorted(os.sched_getaffinity(0))[:cpus])
    if setup is not None:
        setup(child.pid)
    out: dict[str, str] = {}
    readers = [threading.Thread(target=lambda s=s, k=k: out.__setitem__(k, s.read()))
               for k, s in (("stdout", child.stdout), ("stderr", child.stderr))]
    for reader in readers:
        reader.start()
    peak = 0
    while child.poll() is None:
        peak = max(peak, _vm_hwm_kb(child.pid) or 0)
        if time.monotonic() - start > timeout:
            child.kill()
        time.sleep(POLL_S)
    wall = time.monotonic() - start
    for reader in readers:
        reader.join()
    return Run(child.returncode, wall, peak / 1024.0, out.get("stdout", ""), out.get("stderr", ""))


def dataset(per_class: int) -> Path:
    root = CACHE / f"feeder-{per_class}"
    if not (root / "cat").is_dir() or len(list((root / "cat").glob("*.jpg"))) != per_class:
        scene_dataset(root, per_class, seed=0)
    return root


def backbone_file() -> Path:
    """The FP32 EfficientNet-Lite0 `edgecam model build` writes (built with torch once, cached)."""
    from edgecam.bench.models import build_pair, cached_build_options

    return build_pair(cached_build_options("efficientnet_lite0", "imagenet")).fp32


@dataclass(frozen=True)
class Variant:
    label: str
    python: str
    args: tuple[str, ...]
    source: str | None = None  # another edgecam source tree to run (PYTHONPATH), e.g. before a change


def variants(args: argparse.Namespace, backbone: Path) -> list[Variant]:
    torch_args = ("--trainer", "torch", "--device", args.device)
    found = [Variant("torch (today's path)", sys.executable, torch_args),
             Variant("no torch (onnxruntime + numpy)", sys.executable, ("--backbone", str(backbone)))]
    if args.notorch_python:
        found.append(Variant("no torch, in a venv without torch", args.notorch_python,
                             ("--backbone", str(backbone))))
    if args.finetune:
        found.append(Variant("torch, --finetune", sys.executable, (*torch_args, "--finetune")))
    if args.baseline_src:
        found.append(Variant(f"torch, {args.baseline_label}", sys.executable,
                             ("--device", args.device), source=str(Path(args.baseline_src).resolve())))
    return found


def run_once(variant: Variant, data: Path, args: argparse.Namespace, index: int, seed: int | None = None) -> dict:
    from edgecam.model.classifier import Classifier

    out = CACHE / f"out-{index}"
    force = () if variant.source else ("--force",)  # older trees overwrite without asking
    cmd = [variant.python, "-m", "edgecam", "train", str(data), "--out", str(out), "--name", "bench",
           *force, "--threads", str(args.threads), "--seed", str(args.seed if seed is None else seed), *variant.args]
    env = {**os.environ, "PYTHONPATH": variant.source} if variant.source else None
    run = measured(cmd, cpus=args.cpus, cwd=variant.source or ROOT, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    info = Classifier(out / "bench_int8.onnx", threads=1).info
    metrics = info.metrics
    return {"wall": run.wall, "peak": run.peak_mb, "fp32": metrics["accuracy"]["fp32"],
            "int8": metrics["accuracy"]["int8"], "val": metrics["val_images"],
            "stages": metrics["training"]["stages_s"], "confusion": metrics["confusion"],
            "split": info.dataset["fingerprint"] + " " + info.dataset["split"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs each run is pinned to (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="--threads for edgecam train (default 2)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="the torch rows' device")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finetune", action="store_true", help="add a torch --finetune row")
    parser.add_argument("--notorch-python", help="also run the torch-free path with this interpreter "
                        "(a venv with only requirements-train.txt, e.g. the tests' .cache/notorch-venv-*)")
    parser.add_argument("--baseline-src", help="also run the torch path of another edgecam source tree "
                        "(e.g. `git archive <commit> | tar -x -C DIR`): the numbers before a change")
    parser.add_argument("--baseline-label", default="before this change", help="that row's name")
    parser.add_argument("--seeds", type=int, default=0, help="instead: validation accuracy of each variant "
                        "for seeds 0..N-1 (N splits of the data), one run each")
    args = parser.parse_args()
    data, backbone = dataset(args.per_class), backbone_file()
    chosen = variants(args, backbone)
    if args.seeds:
        accuracy_sweep(chosen, data, args)
        return
    before = load()
    results: dict[str, list[dict]] = {v.label: [] for v in chosen}
    for run in range(args.runs):
        for index, variant in enumerate(chosen):
            res = run_once(variant, data, args, index)
            results[variant.label].append(res)
            print(f"  run {run + 1}/{args.runs} {variant.label}: {res['wall']:.1f} s, {res['peak']:.0f} MB, "
                  f"INT8 {res['int8']:.1%}", file=sys.stderr)
    print(f"\n`edgecam train`, EfficientNet-Lite0 at 160 px, 2 classes x {args.per_class} images (seed "
          f"{args.seed}: the same 80/20 split for every run), --threads {args.threads}, pinned to "
          f"{args.cpus} CPUs, {args.runs} runs each, interleaved. {host_line(before)}\n")
    print("| trainer | peak RSS MB (VmHWM) | wall s | val acc FP32 | val acc INT8 | val images | stages s (last run) |")
    print("|---|---|---|---|---|---|---|")
    for label, rows in results.items():
        accs = {f"{r['fp32']:.1%}" for r in rows}, {f"{r['int8']:.1%}" for r in rows}
        print(f"| {label} | {fmt_spread([r['peak'] for r in rows], 0)} | {fmt_spread([r['wall'] for r in rows], 1)} "
              f"| {', '.join(sorted(accs[0]))} | {', '.join(sorted(accs[1]))} | {rows[-1]['val']} "
              f"| {rows[-1]['stages']} |")
    splits = {r["split"] for rows in results.values() for r in rows}
    print(f"\nsame split in every run: {'yes' if len(splits) == 1 else 'NO: ' + '; '.join(sorted(splits))}")
    base, free = list(results.values())[:2]
    print(f"median ratio no torch / torch: peak RSS {_median(free, 'peak') / _median(base, 'peak'):.2f}, "
          f"wall {_median(free, 'wall') / _median(base, 'wall'):.2f}")


def accuracy_sweep(chosen: list[Variant], data: Path, args: argparse.Namespace) -> None:
    """Validation accuracy per seed (each seed is another 80/20 split, init and augmentation)."""
    table: dict[int, list[dict]] = {}
    for seed in range(args.seeds):
        table[seed] = [run_once(variant, data, args, index, seed) for index, variant in enumerate(chosen)]
        print(f"  seed {seed}: " + ", ".join(f"{v.label} {r['int8']:.1%}" for v, r in zip(chosen, table[seed])),
              file=sys.stderr)
    val = table[0][0]["val"]
    print(f"\nValidation accuracy of `edgecam train`, 2 classes x {args.per_class} images, {val} validation images "
          f"per split, seeds 0-{args.seeds - 1} (split, init and augmentation), FP32 / INT8:\n")
    print("| seed | " + " | ".join(v.label for v in chosen) + " |")
    print("|---" * (len(chosen) + 1) + "|")
    for seed, rows in table.items():
        print(f"| {seed} | " + " | ".join(f"{r['fp32']:.1%} / {r['int8']:.1%}" for r in rows) + " |")
    means = [sum(table[s][i]["int8"] for s in table) / len(table) for i in range(len(chosen))]
    print("| mean INT8 | " + " | ".join(f"{m:.1%}" for m in means) + " |")
    same = sum(len({f"{r['int8']:.4f}" for r in rows}) == 1 for rows in table.values())
    print(f"\nsame INT8 accuracy on {same} of {len(table)} splits")


def _median(rows: list[dict], key: str) -> float:
    return spread(r[key] for r in rows)[1]


if __name__ == "__main__":
    main()
