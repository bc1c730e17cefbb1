"""What the daemon's memory is made of: resident set size, one row per component.

    .venv/bin/python -m edgecam.bench.rss [--model FILE] [--seconds 30] [--repeat 3]

Each component row is measured in a fresh process that imports (or builds) everything of
the rows above it, then that component, and reports its own VmRSS: the row's share is the
difference. The last rows run the real daemon (`edgecam run`, one demo camera, MQTT to a
private Mosquitto, EfficientNet-Lite0 at 160 by default) for ``--seconds`` and read its
VmRSS and peak (VmHWM) from /proc. Medians (and spread) of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgecam.bench.common import fmt_spread, host_line, load

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / ".cache" / "test-models" / "efficientnet_lite0_160_int8.onnx"

#: (component, what the process runs after the rows above it)
STEPS: tuple[tuple[str, str], ...] = (
    ("Python", "pass"),
    ("numpy", "import numpy"),
    ("pydantic + the config tree", "from edgecam.config import parse_config; parse_config({})"),
    ("OpenCV", "import cv2"),
    ("onnxruntime", "import onnxruntime"),
    ("the daemon's modules (paho, sqlite, web)", "import edgecam.service.daemon, edgecam.publish.mqtt, edgecam.web"),
    ("the model's session, warmed",
     "from edgecam.model.classifier import Classifier; c = Classifier(MODEL, threads=2)"),
    ("a batch of 4 crops through it",
     "import numpy as np; c.probabilities_batch([np.zeros((480, 640, 3), np.uint8)] * 4)"),
)

_PROBE = """
import os, sys
MODEL = sys.argv[1]
{code}
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        print(int(line.split()[1]) / 1024)
"""


def step_rss(upto: int, model: Path, env: dict[str, str]) -> float:
    code = "\n".join(statement for _, statement in STEPS[: upto + 1])
    out = subprocess.run([sys.executable, "-c", _PROBE.format(code=code), str(model)], capture_output=True,
                         text=True, check=True, env=env, cwd=tempfile.gettempdir())
    return float(out.stdout.strip().splitlines()[-1])


def daemon_rss(model: Path, seconds: float, env: dict[str, str], workdir: Path) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB of `edgecam run` after ``seconds``: one demo camera, MQTT on."""
    from edgecam.bench.broker import Broker

    broker = Broker(workdir / "broker").start()
    config = workdir / "config.yaml"
    config.write_text(json.dumps({"device_id": "rss", "model": {"path": str(model), "threads": 2},
                                  "cameras": {"demo": {"uri": "demo", "fps": 10}},
                                  "mqtt": {"host": broker.host, "port": broker.port}}))
    proc = subprocess.Popen([sys.executable, "-m", "edgecam", "run", "--config", str(config)], cwd=workdir,
                            env={**env, "STATE_DIRECTORY": str(workdir)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(seconds)
        status = {line.split(":")[0]: int(line.split()[1]) / 1024
                  for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                  if line.startswith(("VmRSS:", "VmHWM:"))}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        broker.stop()
    return status["VmRSS"], status["VmHWM"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load_before = load()
    env = dict(os.environ)
    rows: dict[str, list[float]] = {name: [] for name, _ in STEPS}
    totals: list[float] = []
    daemon: list[tuple[float, float]] = []
    for _ in range(args.repeat):
        previous = 0.0
        for i, (name, _) in enumerate(STEPS):
            value = step_rss(i, args.model, env)
            rows[name].append(value - previous)
            previous = value
        totals.append(previous)
        with tempfile.TemporaryDirectory(prefix="edgecam-rss-") as folder:
            daemon.append(daemon_rss(args.model, args.seconds, env, Path(folder)))
    print(f"\nRSS of edgecam's parts, {args.model.name}, MB: median (min-max) of {args.repeat} rounds\n")
    print("| component | MB |")
    print("|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {fmt_spread(values, 1)} |")
    print(f"| **all of the above** | {fmt_spread(totals, 1)} |")
    print(f"| the daemon after {args.seconds:g} s (one demo camera at 10 fps, MQTT), VmRSS | "
          f"{fmt_spread([rss for rss, _ in daemon], 1)} |")
    print(f"| ... its peak (VmHWM) | {fmt_spread([peak for _, peak in daemon], 1)} |")
    print(f"\n{host_line(load_before)}")


if __name__ == "__main__":
    main()
