#!/usr/bin/env python3
"""Cameras and regions benchmark: 1, 2 and 4 cameras with 1-3 regions each, batched and unbatched.

Every camera is an in-memory source of real photos (scikit-image's, 640x480) paced at 30 FPS,
fed to the daemon through ``Daemon(sources={camera: source})``; every region triggers on every
frame. Each configuration runs in a fresh child process (its own peak RSS) for ``--seconds``
after ``--warmup``, once with crops due together run as one batch per model
(``Daemon(batch=True)``, the default) and once one by one (``batch=False``).

    .venv/bin/python -m edgecam.bench.cameras [--model FILE] [--threads 2] [--seconds 5] [--repeat 5]
    .venv/bin/python -m edgecam.bench.cameras --cameras 1 2 --regions 2 --seconds 2 --repeat 1

Regions: 1 = ``full`` (the whole frame); 2 adds ``door``, nested inside it; 3 adds ``feeder``,
overlapping ``door``. A micro-benchmark times the batching alone: four crops (the regions of
four frames) as one ``Classifier.probabilities_batch`` call against four calls of one crop,
split into preprocessing and ``session.run``.

Targets (issue 12): four crops due together cost <= 0.85x four batch-1 runs; each extra camera
adds <= 15 MB peak RSS; a second camera never lowers the first camera's result rate while the
CPU has room (the inference thread was busy less than 80% of the time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.bench.common import fmt, fmt_spread, host_line, load, peak_rss_mb, spread
from edgecam.bench.pipeline import DEFAULT_MODEL, ensure_model, frames, pct

FULL, DOOR, FEEDER, GATE = (0.0, 0.0, 1.0, 1.0), (0.55, 0.25, 0.85, 0.95), (0.1, 0.1, 0.6, 0.6), (0.0, 0.5, 0.5, 1.0)
REGION_SETS = {1: {"full": FULL}, 2: {"full": FULL, "door": DOOR}, 3: {"full": FULL, "door": DOOR, "feeder": FEEDER}}
MICRO_BOXES = (FULL, DOOR, FEEDER, GATE)
SOURCE_FPS = 30.0
KEPT = 0.95  # a camera kept its 30 FPS when it got results for >= 95% of them
SAME_RATE = 0.97  # "never lowers": with a second camera the first keeps >= 97% of its rate alone (1 of 30 FPS)
ROOM_BUSY = 0.80  # the CPU has room while the inference thread is busy < 80% of the wall time
BATCH_TARGET = 0.85
RSS_TARGET_MB = 15.0


def camera_names(count: int) -> list[str]:
    return [f"cam{i + 1}" for i in range(count)]


# ------------------------------------------------------------------ children
def child_daemon(args: argparse.Namespace) -> dict:
    """One configuration: the whole daemon, ``args.cameras`` cameras x ``args.regions`` regions."""
    from edgecam.config import parse_config
    from edgecam.publish.sink import Sink
    from edgecam.service.daemon import Daemon
    from edgecam.sources.memory import MemorySource

    class Recorder(Sink):
        """Keeps (camera, region, total ms, classifier start, end) while ``on``: a few floats
        per result, so the recorder adds next to nothing to the RSS of more cameras."""

        name = "recorder"

        def __init__(self) -> None:
            self.on, self.rows = False, list[Any]()

        def publish_result(self, result) -> None:
            if self.on:
                self.rows.append((result.camera, result.region, result.total_ms,
                                  result.inference_start, result.inference_end))

    names, boxes = camera_names(args.cameras), REGION_SETS[args.regions]
    config = parse_config({
        "device_id": "bench", "mqtt": {"enabled": False}, "stats": {"interval_s": 3600}, "log_level": "WARNING",
        "model": {"path": str(args.model), "threads": args.threads},
        "cameras": {name: {"uri": "memory", "regions": {region: {"box": list(box)} for region, box in boxes.items()}}
                    for name in names}})
    images = frames()  # the same four arrays for every camera, each starting at another photo
    sources = {name: MemorySource(images[i % 4:] + images[:i % 4], fps=SOURCE_FPS, source_id=f"memory-{name}")
               for i, name in enumerate(names)}
    recorder = Recorder()
    daemon = Daemon(config, stdout_results=False, sources=sources, extra_sinks=[recorder], batch=args.batch)
    runner = threading.Thread(target=daemon.run, name="bench-daemon")
    runner.start()
    time.sleep(args.warmup)
    before, cpu0, wall0 = daemon.status.counters()["cameras"], sum(os.times()[:2]), time.monotonic()
    recorder.on = True
    time.sleep(args.seconds)
    recorder.on = False
    after, cpu1, wall1 = daemon.status.counters()["cameras"], sum(os.times()[:2]), time.monotonic()
    daemon.stop()
    runner.join()
    if daemon.inference.error is not None:
        raise SystemExit(f"inference failed: {daemon.inference.error!r}")
    wall = wall1 - wall0
    return {"cpu_percent": (cpu1 - cpu0) / wall * 100, "busy": busy_fraction(recorder.rows, wall),
            "cameras": {name: camera_rates(before[name], after[name], wall) for name in names},
            "latency": region_latency(recorder.rows)}


def camera_rates(before: dict, after: dict, wall: float) -> dict:
    captured, dropped = (after[name] - before[name] for name in ("captured", "dropped"))
    return {"fps": (after["processed"] - before["processed"]) / wall, "captured_fps": captured / wall,
            "dropped_pct": 100.0 * dropped / captured if captured else float("nan")}


def busy_fraction(rows: list[tuple], wall: float) -> float:
    """Share of the wall time the inference thread spent in classifier calls (a batch counts once)."""
    runs = {(start, end) for _, _, _, start, end in rows}
    return sum(end - start for start, end in runs) / wall


def region_latency(rows: list[tuple]) -> dict[str, list[float]]:
    """'camera/region' -> [p50, p99] of capture -> handed to the sink, ms."""
    by_region: dict[str, list[float]] = {}
    for camera, region, total_ms, _, _ in rows:
        by_region.setdefault(f"{camera}/{region}", []).append(total_ms)
    return {key: [pct(values, 50), pct(values, 99)] for key, values in by_region.items()}


def child_micro(args: argparse.Namespace) -> dict:
    """ms per image: four crops as one batch against four batch-1 runs, and where the time goes:
    preprocessing, session.run at batch 1/2/4/8 (fitted as fixed ms per run + ms per image),
    and the peak RSS a batch of N adds over batch 1."""
    from edgecam.model.classifier import Classifier
    from edgecam.regions.region import pixel_box

    clf = Classifier(str(args.model), threads=args.threads)
    crops = []
    for image, box in zip(frames(), MICRO_BOXES):
        x1, y1, x2, y2 = pixel_box(box, image.shape[1], image.shape[0])
        crops.append(image[y1:y2, x1:x2])  # views, as the inference thread passes them
    tensors = [clf.preprocessor(crop) for crop in crops]
    batches = {n: np.concatenate((tensors * 3)[:n]) for n in (1, 2, 4, 8, 12)}
    rss = {}
    for n, tensor in batches.items():  # growing batches: each VmHWM step is what the batch adds
        for _ in range(3):
            clf.run_batch(tensor)
        if n == 1:
            base = peak_rss_mb()
        rss[n] = peak_rss_mb() - base
    steps = {  # name -> (call, images it handles)
        "batch": (lambda: clf.probabilities_batch(crops), 4),
        "single": (lambda: [clf.probabilities_batch([crop]) for crop in crops], 4),
        "preprocess": (lambda: [clf.preprocessor(crop) for crop in crops], 4),
        "run_batch": (lambda: clf.run_batch(batches[4]), 4),
        "run_single": (lambda: [clf.run_batch(one) for one in tensors], 4),
        "run_2": (lambda: clf.run_batch(batches[2]), 2),
        "run_8": (lambda: clf.run_batch(batches[8]), 8),
    }
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.micro_runs + 5):  # the first 5 are warm-up
        order = list(steps) if i % 2 else list(reversed(steps))  # alternate, so drifts hit both sides
        for name in order:
            call, images = steps[name]
            start, start_cpu = time.perf_counter(), time.process_time()  # CPU: every thread, the pool's too
            call()
            if i >= 5:
                wall[name].append((time.perf_counter() - start) * 1000 / images)
                cpu[name].append((time.process_time() - start_cpu) * 1000 / images)
    out: dict[str, Any] = {name: {"median": pct(wall[name], 50), "p90": pct(wall[name], 90),
                                  "cpu": pct(cpu[name], 50)} for name in steps}
    sizes = {1: "run_single", 2: "run_2", 4: "run_batch", 8: "run_8"}  # ms per run = a + b * batch
    per_run = [out[name]["median"] * n for n, name in sizes.items()]
    per_image, fixed = np.polyfit(list(sizes), per_run, 1)
    out["fit"] = {"fixed_ms": float(fixed), "per_image_ms": float(per_image)}
    out["rss_by_batch"] = rss
    out["paired_ratio"] = float(np.median(np.divide(wall["batch"], wall["single"])))
    return out


CHILDREN = {"daemon": child_daemon, "micro": child_micro}


# ------------------------------------------------------------------ parent
def run_child(args: argparse.Namespace, child: str, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "edgecam.bench.cameras", "--child", child, "--model", str(args.model),
           "--threads", str(args.threads),
           "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--micro-runs", str(args.micro_runs), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{child} {' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def key(cameras: int, regions: int, batch: bool) -> str:
    return f"{cameras}x{regions}{'b' if batch else 'u'}"


def run_round(args: argparse.Namespace, rep: int) -> dict:
    out = {"micro": run_child(args, "micro")}
    print(f"  round {rep + 1}/{args.repeat} micro: batch/single {out['micro']['paired_ratio']:.2f}, "
          f"load {load()}", file=sys.stderr)
    for cameras in args.cameras:
        for regions in args.regions:
            for batch in ((True, False) if rep % 2 == 0 else (False, True)):
                extra = ["--cameras", str(cameras), "--regions", str(regions), "--batch", str(int(batch))]
                row = out[key(cameras, regions, batch)] = run_child(args, "daemon", *extra)
                fps = " ".join(f"{c['fps']:.1f}" for c in row["cameras"].values())
                print(f"  round {rep + 1}/{args.repeat} {cameras} cameras x {regions} regions "
                      f"{'batched' if batch else 'unbatched'}: FPS {fps}, busy {row['busy']:.0%}, "
                      f"load {load()}", file=sys.stderr)
    return out


def med(rounds: list[dict], name: str, *path: str) -> float:
    """Median over rounds of rounds[i][name][path...]."""
    values = []
    for r in rounds:
        value = r[name]
        for part in path:
            value = value[part]
        values.append(value)
    return spread(values)[1]


def print_micro(rounds: list[dict], args: argparse.Namespace) -> None:
    print(f"\nBatching alone: four crops (the boxes {', '.join(map(str, MICRO_BOXES))} of four frames), "
          f"{args.micro_runs} runs per round; median (min-max) over rounds\n")
    print("| step | ms/image median | ms/image p90 | CPU ms/image median (all threads) |")
    print("|---|---|---|---|")
    labels = {"batch": "4 crops as one batch: probabilities_batch(4 crops)",
              "single": "4 batch-1 runs: 4 x probabilities_batch(1 crop)",
              "preprocess": "  preprocessing (resize, centre crop, normalize), per crop",
              "run_single": "  session.run, batch 1", "run_2": "  session.run, batch 2",
              "run_batch": "  session.run, batch 4", "run_8": "  session.run, batch 8"}
    for name, label in labels.items():
        cells = (fmt_spread([r["micro"][name][stat] for r in rounds], 3) for stat in ("median", "p90", "cpu"))
        print(f"| {label} | {' | '.join(cells)} |")
    fixed, per_image = ([r["micro"]["fit"][name] for r in rounds] for name in ("fixed_ms", "per_image_ms"))
    print(f"\nsession.run ms per run = fixed + per image x batch (least squares over batch 1, 2, 4, 8): fixed "
          f"{fmt_spread(fixed, 2)} ms, per image {fmt_spread(per_image, 2)} ms; "
          "one run of four saves three fixed costs")
    sizes = sorted(rounds[0]["micro"]["rss_by_batch"], key=int)[1:]
    growth = (f"{n}: {fmt_spread([r['micro']['rss_by_batch'][n] for r in rounds], 1)}" for n in sizes)
    print(f"peak RSS a batch of N adds over batch 1 (VmHWM, MB): {', '.join(growth)}")


def region_cell(rounds: list[dict], config: str, camera: str, regions: int) -> str:
    cells = []
    for region in REGION_SETS[regions]:
        name = f"{camera}/{region}"
        p50, p99 = (spread(r[config]["latency"].get(name, [float("nan")] * 2)[i] for r in rounds)[1] for i in (0, 1))
        cells.append(f"{region} {fmt(p50, 1)}/{fmt(p99, 1)}")
    return ", ".join(cells)


def print_table(rounds: list[dict], args: argparse.Namespace) -> None:
    print("\n| cameras | regions | camera | result FPS batched / unbatched | kept 30 FPS | dropped % | "
          "latency p50/p99 ms per region, batched | latency p50/p99 ms per region, unbatched | "
          "inference busy % | CPU % (1 core) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for cameras in args.cameras:
        for regions in args.regions:
            b, u = key(cameras, regions, True), key(cameras, regions, False)
            for index, camera in enumerate(camera_names(cameras)):
                fps = [med(rounds, k, "cameras", camera, "fps") for k in (b, u)]
                kept = " / ".join("yes" if f >= KEPT * SOURCE_FPS else "no" for f in fps)
                dropped = [med(rounds, k, "cameras", camera, "dropped_pct") for k in (b, u)]
                shared = ["", "", ""]
                if index == 0:
                    shared = [" / ".join(fmt(med(rounds, k, name) * scale, 0) for k in (b, u))
                              for name, scale in (("busy", 100), ("cpu_percent", 1), ("rss_peak_mb", 1))]
                print(f"| {cameras} | {regions} | {camera} | {fmt(fps[0], 1)} / {fmt(fps[1], 1)} | {kept} | "
                      f"{fmt(dropped[0], 0)} / {fmt(dropped[1], 0)} | {region_cell(rounds, b, camera, regions)} | "
                      f"{region_cell(rounds, u, camera, regions)} | {' | '.join(shared)} |")


def check_targets(rounds: list[dict], args: argparse.Namespace) -> dict[str, bool | None]:
    """Print the issue's three targets with their figures; returns {target: passed, None = not measured}."""
    print()
    return {"batch": check_batching(rounds), "rss": check_rss(rounds, args), "second": check_second(rounds, args)}


def check_batching(rounds: list[dict]) -> bool:
    micro = [r["micro"] for r in rounds]
    low, mid, high = spread(m["batch"]["median"] / m["single"]["median"] for m in micro)
    runs = fmt_spread([m["run_batch"]["median"] / m["run_single"]["median"] for m in micro], 3)
    ok = mid <= BATCH_TARGET
    print(f"(1) four crops due together / four batch-1 runs, ms per image: median {mid:.3f} (min {low:.3f}, "
          f"max {high:.3f}, {len(rounds)} rounds; per-run pairs {fmt_spread([m['paired_ratio'] for m in micro], 3)}"
          f"; session.run alone {runs}) (target <= {BATCH_TARGET}): {passed(ok)}")
    return ok


def check_rss(rounds: list[dict], args: argparse.Namespace) -> bool | None:
    steps, worst = [], float("-inf")
    for batch in (True, False):
        for regions in args.regions:
            for a, b in zip(args.cameras, args.cameras[1:]):
                value = spread((r[key(b, regions, batch)]["rss_peak_mb"] - r[key(a, regions, batch)]["rss_peak_mb"])
                               / (b - a) for r in rounds)[1]
                worst = max(worst, value)
                steps.append(f"{'b' if batch else 'u'} {regions}r {a}->{b}: {value:+.1f}")
    ok = worst <= RSS_TARGET_MB if steps else None
    print(f"(2) peak RSS per extra camera, MB (median over rounds; b/u = batched/unbatched, Nr = N regions): "
          f"{', '.join(steps) or 'needs two camera counts'}; worst {fmt(worst, 1)} "
          f"(target <= {RSS_TARGET_MB:g}): {passed(ok)}")
    return ok


def check_second(rounds: list[dict], args: argparse.Namespace) -> bool | None:
    lines, judged = [], []
    if 1 in args.cameras and 2 in args.cameras:
        for batch in (True, False):
            for regions in args.regions:
                alone, two = key(1, regions, batch), key(2, regions, batch)
                ratio = spread(r[two]["cameras"]["cam1"]["fps"] / r[alone]["cameras"]["cam1"]["fps"]
                               for r in rounds)[1]
                busy = med(rounds, two, "busy")
                if busy < ROOM_BUSY:
                    judged.append(ratio >= SAME_RATE)
                lines.append(f"{'b' if batch else 'u'} {regions}r {ratio:.3f} (busy {busy:.0%}"
                             f"{'' if busy < ROOM_BUSY else ', no room: not judged'})")
    ok = all(judged) if judged else None
    print(f"(3) cam1's result rate with a second camera / alone (median over rounds; inference busy with two): "
          f"{', '.join(lines) or 'needs 1 and 2 cameras'} (target >= {SAME_RATE} where busy < {ROOM_BUSY:.0%}): "
          f"{passed(ok)}")
    return ok


def passed(value: bool | None) -> str:
    return "n/a (nothing to judge)" if value is None else ("PASS" if value else "FAIL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per configuration")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of everything; figures are medians")
    parser.add_argument("--cameras", type=int, nargs="+", choices=(1, 2, 4), default=[1, 2, 4])
    parser.add_argument("--regions", type=int, nargs="+", choices=(1, 2, 3), default=[1, 2, 3])
    parser.add_argument("--micro-runs", type=int, default=100, help="runs of each micro-benchmark step per round")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, choices=(0, 1), default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "daemon":
            args.cameras, args.regions, args.batch = args.cameras[0], args.regions[0], bool(args.batch)
        result = CHILDREN[args.child](args)
        result["rss_peak_mb"] = peak_rss_mb()  # this child's own peak (see bench_common)
        result["torch_imported"] = "torch" in sys.modules
        print(json.dumps(result))
        return
    args.model = ensure_model(args.model)
    args.cameras, args.regions = sorted(set(args.cameras)), sorted(set(args.regions))
    load_before = load()
    rounds = [run_round(args, rep) for rep in range(args.repeat)]
    print(f"\nmodel {args.model.name}, {args.threads} threads, every camera 640x480 at {SOURCE_FPS:g} FPS from "
          f"memory, every region triggered on every frame, {args.seconds:g} s per configuration after "
          f"{args.warmup:g} s warm-up, {args.repeat} round(s); medians over rounds")
    print(host_line(load_before))
    if any(r[k].get("torch_imported") for r in rounds for k in r):
        print("WARNING: torch was imported by a child")
    print_table(rounds, args)
    print_micro(rounds, args)
    check_targets(rounds, args)


if __name__ == "__main__":
    main()
