#!/usr/bin/env python3
"""Pipeline benchmark: does the daemon keep up with its own classifier?

One run, side by side, same model and threads, each phase in a fresh child
process (so RSS is per phase and we can prove torch is never imported):

  raw      classifier alone: preprocess + session.run + top-k in a tight loop
  daemon   the whole daemon (capture -> ring -> inference -> publisher) fed by an
           in-memory source at unlimited rate
  paced    the daemon with a 30 FPS source: latency capture -> handed to the sink,
           CPU % of one core, peak RSS
  mqtt     (--mqtt) paced, publishing through a real Mosquitto on a free loopback
           port: latency capture -> received by a subscriber

    .venv/bin/python scripts/bench_pipeline.py [--model FILE] [--threads 2] [--seconds 10] [--mqtt]

Targets: daemon >= 90% of raw throughput; peak RSS < 120 MB with INT8 ResNet-18.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_MODEL = REPO / ".cache" / "bench-models" / "resnet18_160_int8.onnx"


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

    data = Path(importlib.util.find_spec("skimage").origin).parent / "data"
    photos = [cv2.imread(str(data / name)) for name in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]
    photos = [cv2.resize(p, (704, 528)) for p in photos]
    return [np.ascontiguousarray(photos[i % 4][i % 48:i % 48 + 480, i:i + 640]) for i in range(count)]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# ------------------------------------------------------------------ children
def child_raw(model: str, threads: int, seconds: float) -> dict:
    from edgecam.model.classifier import Classifier

    clf = Classifier(model, threads=threads)
    images = frames()
    times = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        start = time.perf_counter()
        clf.top_k(clf.probabilities(images[i % len(images)]), 3)
        times.append((time.perf_counter() - start) * 1000)
        i += 1
    return {"ms_median": pct(times, 50), "ms_p90": pct(times, 90), "fps": len(times) / seconds}


def _run_daemon(model: str, threads: int, seconds: float, fps, mqtt_port=None):
    from edgecam.config import parse_config
    from edgecam.publish.sink import Sink
    from edgecam.service.daemon import Daemon
    from edgecam.sources.memory import MemorySource

    class Recorder(Sink):
        name = "recorder"

        def __init__(self) -> None:
            self.results = []

        def publish_result(self, result) -> None:
            self.results.append(result)

    mqtt = {"enabled": False} if mqtt_port is None else {"enabled": True, "host": "127.0.0.1", "port": mqtt_port}
    config = parse_config({"device_id": "bench", "mqtt": mqtt, "model": {"path": model, "threads": threads},
                           "stats": {"interval_s": 3600}, "log_level": "WARNING"})
    recorder = Recorder()
    daemon = Daemon(config, stdout_results=False, source=MemorySource(frames(), fps=fps), extra_sinks=[recorder])
    runner = threading.Thread(target=daemon.run)
    cpu_start, wall_start = sum(os.times()[:2]), time.monotonic()
    runner.start()
    return daemon, recorder, runner, (cpu_start, wall_start)


def child_daemon(model: str, threads: int, seconds: float, source_fps: Optional[float] = None) -> dict:
    daemon, recorder, runner, _ = _run_daemon(model, threads, seconds, fps=source_fps)
    time.sleep(1.0)  # warm-up: let capture and inference settle
    first = daemon.inference.processed
    time.sleep(seconds)
    processed = daemon.inference.processed - first
    daemon.stop()
    runner.join()
    inference = [r.inference_ms for r in recorder.results[-processed:]]
    return {"ms_median": pct(inference, 50), "ms_p90": pct(inference, 90), "fps": processed / seconds}


def child_paced(model: str, threads: int, seconds: float) -> dict:
    daemon, recorder, runner, (cpu0, wall0) = _run_daemon(model, threads, seconds, fps=30)
    time.sleep(seconds)
    cpu = (sum(os.times()[:2]) - cpu0) / (time.monotonic() - wall0) * 100
    daemon.stop()
    runner.join()
    total = [r.total_ms for r in recorder.results[5:]]
    return {"latency_p50": pct(total, 50), "latency_p99": pct(total, 99), "fps": len(recorder.results) / seconds,
            "cpu_percent": cpu, "ms_median": pct([r.inference_ms for r in recorder.results], 50)}


def child_mqtt(model: str, threads: int, seconds: float) -> dict:
    import paho.mqtt.client as mqtt

    from tests.fixtures_mqtt import Broker

    import tempfile

    broker = Broker(Path(tempfile.mkdtemp(prefix="bench-mqtt-")))
    broker.start()
    received: dict[int, float] = {}
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    sub.on_message = lambda _c, _u, msg: received.setdefault(json.loads(msg.payload)["seq"], time.monotonic())
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("edgecam/bench/result")
    sub.loop_start()
    try:
        daemon, recorder, runner, _ = _run_daemon(model, threads, seconds, fps=30, mqtt_port=broker.port)
        time.sleep(seconds)
        daemon.stop()
        runner.join()
    finally:
        sub.loop_stop()
        broker.stop()
    by_seq = {r.seq: r for r in recorder.results}
    to_sub = [(received[s] - by_seq[s].captured_mono) * 1000 for s in received if s in by_seq]
    broker_ms = [(received[s] - by_seq[s].handed_mono) * 1000 for s in received if s in by_seq]
    return {"latency_p50": pct(to_sub, 50), "latency_p99": pct(to_sub, 99), "broker_p50": pct(broker_ms, 50),
            "fps": len(received) / seconds}


CHILDREN = {"raw": child_raw, "daemon": child_daemon, "paced": child_paced, "mqtt": child_mqtt}


def run_child(name: str, args: argparse.Namespace, source_fps: Optional[float] = None) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--model", str(args.model), "--threads", str(args.threads),
           "--seconds", str(args.seconds)] + (["--source-fps", str(source_fps)] if source_fps else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mqtt", action="store_true", help="also measure through a real Mosquitto")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--source-fps", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        extra = {"source_fps": args.source_fps} if args.child == "daemon" else {}
        result = CHILDREN[args.child](str(args.model), args.threads, args.seconds, **extra)
        result["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        from edgecam.service.stats import rss_mb

        result["rss_now_mb"] = rss_mb()
        result["torch_imported"] = "torch" in sys.modules
        print(json.dumps(result))
        return
    args.model = ensure_model(args.model)
    rows = {"raw": run_child("raw", args)}
    # A source twice as fast as the classifier: frames always waiting, as with a fast
    # camera. The unlimited one spins a whole core on a 2-core machine (shown for honesty).
    fast = round(2 * rows["raw"]["fps"])
    rows[f"daemon, source {fast} FPS"] = run_child("daemon", args, source_fps=fast)
    rows["daemon, source unlimited"] = run_child("daemon", args)
    rows["paced 30 FPS"] = run_child("paced", args)
    if args.mqtt:
        rows["paced 30 FPS via Mosquitto"] = run_child("mqtt", args)
    print_table(rows, args)


def print_table(rows: dict, args: argparse.Namespace) -> None:
    def f(value, digits=2):
        return "-" if value is None or value != value else f"{value:.{digits}f}"

    print(f"\nmodel {args.model.name}, {args.threads} threads, {args.seconds:.0f} s per phase, 640x480 frames\n")
    print("| phase | ms/frame median | ms/frame p90 | FPS | latency p50 ms | latency p99 ms | CPU % (1 core) | peak RSS MB | torch imported |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {f(r.get('ms_median'))} | {f(r.get('ms_p90'))} | {f(r.get('fps'), 1)} | "
              f"{f(r.get('latency_p50'))} | {f(r.get('latency_p99'))} | {f(r.get('cpu_percent'), 0)} | "
              f"{f(r.get('rss_peak_mb'), 0)} | {'yes' if r.get('torch_imported') else 'no'} |")
    for name, row in rows.items():
        if name.startswith("daemon"):
            print(f"{name} / raw throughput: {row['fps'] / rows['raw']['fps']:.1%} (target >= 90%)")
    mqtt = rows.get("paced 30 FPS via Mosquitto")
    if mqtt:
        print(f"broker adds (handed to sink -> received by subscriber) p50: {mqtt['broker_p50']:.2f} ms")


if __name__ == "__main__":
    main()
