#!/usr/bin/env python3
"""Pipeline benchmark: does the daemon keep up with its own classifier?

Side by side, same model and threads, each phase in a fresh child process (so RSS
is per phase and we can prove torch is never imported):

  raw        classifier alone: preprocess + session.run + top-k in a tight loop
  daemon     the whole daemon (capture -> ring -> inference -> publisher) fed by an
             in-memory source at twice the raw FPS (frames always waiting)
  unlimited  the same with a source at unlimited rate
  paced      the daemon with a 30 FPS source: latency capture -> handed to the sink,
             CPU % of one core, peak RSS
  mqtt       (--mqtt) paced, publishing through a real Mosquitto on a free loopback
             port: latency capture -> received by a subscriber
  raw+capture       (experiment) the raw loop while edgecam's capture thread fills a
                    ring at twice the raw FPS in the same process (shares the GIL)
  raw+capture-proc  (experiment) the same capture in another process (no GIL shared)

    .venv/bin/python -m edgecam.bench.pipeline [--model FILE] [--threads 2] [--seconds 10] [--mqtt]
    .venv/bin/python -m edgecam.bench.pipeline --repeat 5 --seconds 5    # min/median/max over 5 rounds
    .venv/bin/python -m edgecam.bench.pipeline --phases raw daemon raw+capture raw+capture-proc
    .venv/bin/python -m edgecam.bench.pipeline --steps    # CPU us of each per-frame step (read, put, copy ...)

Every round runs the phases in turn (interleaved, so load drifts hit all alike); the
throughput ratios are taken within a round. A second table splits each frame's cost
by thread: CPU ms per classified frame and ms spent runnable but waiting for a CPU
(/proc schedstat), which is what tells a busy machine from a slow daemon.

Targets: daemon >= 90% of raw throughput; peak RSS < 120 MB with INT8 ResNet-18.
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
from typing import Any, Optional

import numpy as np

from edgecam.bench.common import fmt, fmt_spread, host_line, load, peak_rss_mb, per_frame_by_group, spread, thread_times

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / ".cache" / "bench-models" / "resnet18_160_int8.onnx"
WARMUP_S = 1.0


def ensure_model(path: Path) -> Path:
    if path.exists():
        return path
    print(f"building {path.name} (random weights: timing only) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "edgecam", "model", "build", "--arch", "resnet18", "--weights", "random",
                    "--size", "160", "--out", str(path.parent)], check=True)
    return path


def frames(count: int = 4) -> list[np.ndarray]:
    """640x480 crops of scikit-image's photos, read with cv2 (importing skimage would inflate RSS)."""
    import importlib.util

    import cv2

    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise SystemExit("the pipeline benchmark needs scikit-image's photos (scripts/setup.sh --dev)")
    data = Path(spec.origin).parent / "data"
    read = [cv2.imread(str(data / name)) for name in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]
    photos = [cv2.resize(p, (704, 528)) for p in read if p is not None]
    return [np.ascontiguousarray(photos[i % 4][i % 48:i % 48 + 480, i:i + 640]) for i in range(count)]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# ------------------------------------------------------------------ children
def _capture(fps: Optional[float], stop: threading.Event):
    """edgecam's own capture thread filling a ring from the benchmark's frames (nobody reads it)."""
    from edgecam.buffer.ring import FrameRing
    from edgecam.config import BackoffConfig
    from edgecam.sources.capture import CaptureThread
    from edgecam.sources.memory import MemorySource

    capture = CaptureThread(MemorySource(frames(), fps=fps), FrameRing(4), stop, BackoffConfig())
    capture.start()
    return capture


def child_capture(args: argparse.Namespace) -> dict:
    """Capture alone (the other process of raw+capture-proc): runs until stdin closes."""
    stop = threading.Event()
    capture = _capture(args.source_fps, stop)
    while capture.frames == 0:
        time.sleep(0.01)
    print("capturing", flush=True)  # the raw loop starts its warm-up now
    sys.stdin.read()
    stop.set()
    capture.stop()
    return {"captured": capture.frames}


def child_raw(args: argparse.Namespace, capture: str = "") -> dict:
    from edgecam.model.classifier import Classifier

    threading.current_thread().name = "inference"  # the loop plays the inference thread's part
    clf = Classifier(str(args.model), threads=args.threads)
    images = frames()
    stop, helper = threading.Event(), None
    if capture == "thread":
        helper = _capture(args.source_fps, stop)
    elif capture == "process":
        helper = subprocess.Popen([sys.executable, "-m", "edgecam.bench.pipeline", "--child", "capture", "--source-fps",
                                   str(args.source_fps)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert helper.stdout is not None
        helper.stdout.readline()
    deadline, i = time.monotonic() + WARMUP_S, 0
    while time.monotonic() < deadline:  # warm-up, as the daemon phases get
        clf.top_k(clf.probabilities(images[i % len(images)]), 3)
        i += 1
    times, before, start = [], thread_times(), time.monotonic()
    while time.monotonic() < start + args.seconds:
        t0 = time.perf_counter()
        clf.top_k(clf.probabilities(images[i % len(images)]), 3)
        times.append((time.perf_counter() - t0) * 1000)
        i += 1
    wall, split = time.monotonic() - start, per_frame_by_group(before, thread_times(), len(times))
    if isinstance(helper, subprocess.Popen):
        helper.communicate(timeout=30)
    elif helper is not None:
        stop.set()
        helper.stop()
    return {"ms_median": pct(times, 50), "ms_p90": pct(times, 90), "fps": len(times) / wall,
            "ms_mean": float(np.mean(times)), "period_ms": wall * 1000 / len(times), "split": split}


def _run_daemon(args: argparse.Namespace, fps: Optional[float], mqtt_port: Optional[int] = None):
    from edgecam.config import parse_config
    from edgecam.publish.sink import Sink
    from edgecam.service.daemon import Daemon
    from edgecam.sources.memory import MemorySource

    class Recorder(Sink):
        name = "recorder"

        def __init__(self) -> None:
            self.results: list[Any] = []

        def publish_result(self, result) -> None:
            self.results.append(result)

    mqtt = {"enabled": False} if mqtt_port is None else {"enabled": True, "host": "127.0.0.1", "port": mqtt_port}
    config = parse_config({"device_id": "bench", "mqtt": mqtt, "model": {"path": str(args.model),
                           "threads": args.threads}, "stats": {"interval_s": 3600}, "log_level": "WARNING"})
    recorder = Recorder()
    daemon = Daemon(config, stdout_results=False, source=MemorySource(frames(), fps=fps), extra_sinks=[recorder])
    runner = threading.Thread(target=daemon.run)
    cpu_start, wall_start = sum(os.times()[:2]), time.monotonic()
    runner.start()
    return daemon, recorder, runner, (cpu_start, wall_start)


def child_daemon(args: argparse.Namespace) -> dict:
    daemon, recorder, runner, _ = _run_daemon(args, fps=args.source_fps)
    time.sleep(WARMUP_S)  # let capture and inference settle
    first, before, start = sum(daemon.inference.processed.values()), thread_times(), time.monotonic()
    time.sleep(args.seconds)
    processed, wall = sum(daemon.inference.processed.values()) - first, time.monotonic() - start
    split = per_frame_by_group(before, thread_times(), processed)
    daemon.stop()
    runner.join()
    inference = [r.inference_ms for r in recorder.results[-processed:]]
    return {"ms_median": pct(inference, 50), "ms_p90": pct(inference, 90), "fps": processed / wall,
            "ms_mean": float(np.mean(inference)), "period_ms": wall * 1000 / processed, "split": split}


def child_paced(args: argparse.Namespace) -> dict:
    daemon, recorder, runner, (cpu0, wall0) = _run_daemon(args, fps=30)
    time.sleep(args.seconds)
    cpu = (sum(os.times()[:2]) - cpu0) / (time.monotonic() - wall0) * 100
    daemon.stop()
    runner.join()
    total = [r.total_ms for r in recorder.results[5:]]
    return {"latency_p50": pct(total, 50), "latency_p99": pct(total, 99), "fps": len(recorder.results) / args.seconds,
            "cpu_percent": cpu, "ms_median": pct([r.inference_ms for r in recorder.results], 50)}


def child_mqtt(args: argparse.Namespace) -> dict:
    import tempfile

    import paho.mqtt.client as mqtt

    from edgecam.bench.broker import Broker

    broker = Broker(Path(tempfile.mkdtemp(prefix="bench-mqtt-")))
    broker.start()
    received: dict[int, float] = {}
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        received.setdefault(json.loads(msg.payload)["seq"], time.monotonic())

    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("edgecam/bench/result")
    sub.loop_start()
    try:
        daemon, recorder, runner, _ = _run_daemon(args, fps=30, mqtt_port=broker.port)
        time.sleep(args.seconds)
        daemon.stop()
        runner.join()
    finally:
        sub.loop_stop()
        broker.stop()
    by_seq = {r.seq: r for r in recorder.results}
    to_sub = [(received[s] - by_seq[s].captured_mono) * 1000 for s in received if s in by_seq]
    broker_ms = [(received[s] - by_seq[s].handed_mono) * 1000 for s in received if s in by_seq]
    return {"latency_p50": pct(to_sub, 50), "latency_p99": pct(to_sub, 99), "broker_p50": pct(broker_ms, 50),
            "fps": len(received) / args.seconds}


CHILDREN = {"raw": child_raw, "daemon": child_daemon, "paced": child_paced, "mqtt": child_mqtt,
            "capture": child_capture,
            "raw+capture": lambda args: child_raw(args, capture="thread"),
            "raw+capture-proc": lambda args: child_raw(args, capture="process")}
# phase -> (child, source FPS as a multiple of the round's raw FPS; 0 = unlimited, None = n/a)
PHASES = {"raw": ("raw", None), "daemon": ("daemon", 2.0), "unlimited": ("daemon", 0.0),
          "paced": ("paced", None), "mqtt": ("mqtt", None),
          "raw+capture": ("raw+capture", 2.0), "raw+capture-proc": ("raw+capture-proc", 2.0)}
LABELS = {"raw": "raw classifier", "daemon": "daemon, source 2x raw FPS", "unlimited": "daemon, source unlimited",
          "paced": "paced 30 FPS", "mqtt": "paced 30 FPS via Mosquitto",
          "raw+capture": "raw + capture thread (same process)", "raw+capture-proc": "raw + capture in another process"}


def per_step_costs(args: argparse.Namespace) -> None:
    """CPU time of each per-frame step of capture and inference, one thread, nothing else running.

    Thread CPU time (not wall time), so another job on the machine inflates it much less.
    """
    from edgecam.buffer.ring import FrameRing
    from edgecam.model.classifier import Classifier
    from edgecam.sources.memory import MemorySource

    images, ring, clf = frames(), FrameRing(4), Classifier(str(args.model), threads=args.threads)
    source, target = MemorySource(images), np.empty_like(images[0])
    source.open()
    probs = clf.probabilities(images[0])

    def put(i: int) -> None:
        ring.put(images[i % 4], time.monotonic(), time.time())

    def take(i: int) -> None:
        view = ring.get_latest(timeout=0)
        if view is not None:
            ring.release(view)

    # (name, untimed set-up before each call, timed call, calls)
    steps = [("capture: source.read() (in-memory source, unpaced)", None, lambda i: source.read(), 2000),
             ("capture: ring.put() (lock, copy into a slot, notify)", None, put, 2000),
             ("  the copy alone: np.copyto of one 640x480x3 frame", None,
              lambda i: np.copyto(target, images[i % 4]), 2000),
             ("inference: ring.get_latest() + release()", put, take, 2000),
             ("inference: classifier.top_k(probabilities, 3)", None, lambda i: clf.top_k(probs, 3), 2000),
             ("inference: classifier.probabilities() (this thread's share)", None,
              lambda i: clf.probabilities(images[i % 4]), 100)]
    print(f"\nPer-step CPU time of the calling thread (median of 7 blocks), {args.threads} classifier threads")
    print(host_line(load()) + "\n")
    print("| step | us per call |")
    print("|---|---|")
    for name, setup, step, count in steps:
        blocks = []
        for _ in range(7):
            spent = 0
            for i in range(count // 7 + 1):
                if setup is not None:
                    setup(i)
                start = time.thread_time_ns()
                step(i)
                spent += time.thread_time_ns() - start
            blocks.append(spent / (count // 7 + 1) / 1000)
        print(f"| {name} | {np.median(blocks):.1f} |")


def run_child(child: str, args: argparse.Namespace, source_fps: Optional[float] = None) -> dict:
    cmd = [sys.executable, "-m", "edgecam.bench.pipeline", "--child", child, "--model", str(args.model),
           "--threads", str(args.threads),
           "--seconds", str(args.seconds)] + (["--source-fps", str(source_fps)] if source_fps else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_round(args: argparse.Namespace, rep: int) -> dict[str, dict]:
    rows = {"raw": run_child("raw", args)}
    for phase in args.phases:
        child, multiple = PHASES[phase]
        if phase != "raw":
            rows[phase] = run_child(child, args, source_fps=round(multiple * rows["raw"]["fps"]) if multiple else None)
        print(f"  round {rep + 1}/{args.repeat} {phase}: {rows[phase]['fps']:.1f} FPS, load {load()}", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase (after 1 s warm-up)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of all phases; figures are median (min-max)")
    parser.add_argument("--mqtt", action="store_true", help="also measure through a real Mosquitto")
    parser.add_argument("--phases", nargs="+", choices=sorted(PHASES), default=["raw", "daemon", "unlimited", "paced"])
    parser.add_argument("--steps", action="store_true", help="only the CPU cost of each per-frame step")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--source-fps", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = CHILDREN[args.child](args)
        result["rss_peak_mb"] = peak_rss_mb()  # this child's own peak, not its parent's (see bench_common)
        result["torch_imported"] = "torch" in sys.modules
        print(json.dumps(result))
        return
    args.model = ensure_model(args.model)
    if args.steps:
        per_step_costs(args)
        return
    mqtt = ["mqtt"] if args.mqtt and "mqtt" not in args.phases else []
    args.phases = ["raw"] + [p for p in args.phases if p != "raw"] + mqtt
    load_before = load()
    rounds = [run_round(args, rep) for rep in range(args.repeat)]
    print_tables(rounds, args, load_before)


def print_tables(rounds: list[dict[str, dict]], args: argparse.Namespace, load_before: str) -> None:
    def col(phase: str, key: str, digits: int = 2) -> str:
        values = [r[phase].get(key) for r in rounds]
        present = [float(v) for v in values if v is not None]
        return "-" if len(present) < len(values) else fmt_spread(present, digits)

    print(f"\nmodel {args.model.name}, {args.threads} threads, {args.seconds:g} s per phase, 640x480 frames, "
          f"{args.repeat} round(s); median (min-max) over rounds")
    print(host_line(load_before) + "\n")
    print("| phase | ms/frame median | ms/frame p90 | FPS | latency p50 ms | latency p99 ms | CPU % (1 core) "
          "| peak RSS MB | torch imported |")
    print("|---|---|---|---|---|---|---|---|---|")
    for phase in args.phases:
        imported = "yes" if any(r[phase].get("torch_imported") for r in rounds) else "no"
        print(f"| {LABELS[phase]} | {col(phase, 'ms_median')} | {col(phase, 'ms_p90')} | {col(phase, 'fps', 1)} | "
              f"{col(phase, 'latency_p50')} | {col(phase, 'latency_p99')} | {col(phase, 'cpu_percent', 0)} | "
              f"{fmt(max(r[phase]['rss_peak_mb'] for r in rounds), 0)} | {imported} |")
    print()
    for phase in args.phases:
        if phase in ("daemon", "unlimited", "raw+capture", "raw+capture-proc"):
            ratios = [r[phase]["fps"] / r["raw"]["fps"] * 100 for r in rounds]
            low, mid, high = spread(ratios)
            target = " (target >= 90%)" if phase.startswith("daemon") or phase == "unlimited" else ""
            print(f"{LABELS[phase]} / raw throughput: median {mid:.1f}% (min {low:.1f}%, max {high:.1f}%, "
                  f"{len(ratios)} rounds){target}")
    if "mqtt" in args.phases:
        print(f"broker adds (handed to sink -> received by subscriber) p50: "
              f"{fmt_spread([r['mqtt']['broker_p50'] for r in rounds])} ms")
    print_split(rounds, args)


def print_split(rounds: list[dict[str, dict]], args: argparse.Namespace) -> None:
    """Where each classified frame's time goes, per thread group (medians over rounds)."""
    phases = [p for p in args.phases if "split" in rounds[0][p]]
    groups = sorted({g for r in rounds for p in phases for g in r[p]["split"]},
                    key=lambda g: ("inference", "native pools", "capture", "publisher").index(g)
                    if g in ("inference", "native pools", "capture", "publisher") else 9)
    print("\nPer classified frame (median over rounds): wall period, classifier call (mean), the rest of the "
          "loop, and per thread group CPU ms / ms runnable but waiting for a CPU\n")
    print("| phase | period ms | classifier ms (mean) | outside classifier ms | " + " | ".join(groups)
          + " | total CPU ms | total wait ms |")
    print("|---|---|---|---|" + "---|" * (len(groups) + 2))
    for phase in phases:
        cells = []
        for group in groups:
            cpu = spread(r[phase]["split"].get(group, [0, 0])[0] for r in rounds)[1]
            wait = spread(r[phase]["split"].get(group, [0, 0])[1] for r in rounds)[1]
            cells.append(f"{cpu:.3f} / {wait:.3f}")
        total_cpu = spread(sum(v[0] for v in r[phase]["split"].values()) for r in rounds)[1]
        total_wait = spread(sum(v[1] for v in r[phase]["split"].values()) for r in rounds)[1]
        period, classifier = (spread(r[phase][key] for r in rounds)[1] for key in ("period_ms", "ms_mean"))
        outside = spread(r[phase]["period_ms"] - r[phase]["ms_mean"] for r in rounds)[1]
        print(f"| {LABELS[phase]} | {period:.3f} | {classifier:.3f} | {outside:.3f} | " + " | ".join(cells)
              + f" | {total_cpu:.3f} | {total_wait:.3f} |")


if __name__ == "__main__":
    main()
