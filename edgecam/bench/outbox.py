"""The outbox during a broker outage: writes per second and fsyncs, one transaction per entry
(before: ``batch_delay_s=0``) against grouped writes (after: one transaction per 50 ms batch).

During an outage nothing is acknowledged, so the outbox only grows: every state change
and every on_change result is an append. Two loads, each run in a child process (under
``strace -c`` when it is installed, which counts the fsync/fdatasync system calls):

* burst: N appends as fast as the publisher thread can make them. "appends/s" is what
  the caller sees (how long one append holds the publisher thread); "on disk/s" counts
  until the last entry is committed.
* steady: R entries a second for S seconds (several cameras' on_change results), where
  the fsyncs per second are what wears an SD card and costs a Pi's I/O.

    python -m edgecam.bench.outbox                  # 5 repeats of each
    python -m edgecam.bench.outbox --repeats 3 --burst 1000 --rate 100 --seconds 3
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgecam.bench.common import fmt_spread, host_line, load

MODES = {"per entry (before)": 0.0, "grouped, 50 ms (after)": 0.05}
PAYLOAD = json.dumps({"device": "cam", "camera": "garage", "region": "door", "top": [
    {"label": "open", "index": 1, "score": 0.91234}, {"label": "closed", "index": 0, "score": 0.08766}]}).encode()


def child(path: Path, delay_s: float, burst: int, rate: float, seconds: float) -> dict[str, float]:
    """One measurement in this process: the burst, then the steady load; the outbox's own figures."""
    from edgecam.publish.mqtt.outbox import Outbox

    box = Outbox(path, 2**31, batch_delay_s=delay_s).open()
    start = time.perf_counter()
    for i in range(burst):
        box.append("edgecam/cam/garage/door/result", PAYLOAD, i % 10 == 0, "garage", "door")
    appended = time.perf_counter() - start
    while box.counters()["unwritten"]:
        time.sleep(0.001)
    on_disk = time.perf_counter() - start
    burst_commits = box.commits
    period, steady_start = 1.0 / rate, time.perf_counter()
    for i in range(int(rate * seconds)):
        box.append("edgecam/cam/garage/door/result", PAYLOAD, i % 10 == 0, "garage", "door")
        time.sleep(max(0.0, steady_start + (i + 1) * period - time.perf_counter()))
    box.close()
    steady = time.perf_counter() - steady_start
    return {"appends_per_s": burst / appended, "disk_per_s": burst / on_disk, "burst_commits": burst_commits,
            "steady_commits_per_s": (box.commits - burst_commits) / steady,
            "burst_s": on_disk, "steady_s": steady}


def run_child(delay_s: float, burst: int, rate: float, seconds: float) -> dict[str, float]:
    """``child`` in a fresh process, under ``strace -c`` when available: adds the fsyncs."""
    with tempfile.TemporaryDirectory(prefix="edgecam-outbox-bench-") as tmp:
        out = Path(tmp) / "strace.txt"
        code = ("import json, sys; from pathlib import Path; from edgecam.bench.outbox import child; "
                f"print(json.dumps(child(Path({str(Path(tmp) / 'o.sqlite3')!r}), {delay_s}, {burst}, {rate}, "
                f"{seconds})))")
        command = [sys.executable, "-c", code]
        strace = shutil.which("strace")
        if strace:
            command = [strace, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(out), *command]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"the measuring child failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        figures: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
        if strace:
            figures["fsyncs"] = float(sum(int(m.group(1)) for m in
                                          re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f(?:data)?sync$",
                                                      out.read_text(), re.MULTILINE)))
        return figures


def _column(figures: list[dict[str, float]], key: str, digits: int) -> str:
    values = [f[key] for f in figures if key in f]
    return fmt_spread(values, digits) if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--burst", type=int, default=2000, help="appends in the burst (default 2000)")
    parser.add_argument("--rate", type=float, default=100.0, help="appends per second, steady load (default 100)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the steady load (default 5)")
    args = parser.parse_args(argv)
    before = load()
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):  # interleaved, so both modes see the same machine
        for mode, delay in MODES.items():
            runs[mode].append(run_child(delay, args.burst, args.rate, args.seconds))
    print(f"MQTT outbox during an outage: burst of {args.burst} appends, then {args.rate:g}/s for "
          f"{args.seconds:g} s; {args.repeats} runs each, median (min-max); SQLite "
          f"{__import__('sqlite3').sqlite_version}, Python {platform.python_version()}")
    print(f"| mode | appends/s (caller) | on disk/s | transactions (burst) | fsyncs (whole run) "
          f"| transactions/s at {args.rate:g}/s |")
    print("|---|---|---|---|---|---|")
    for mode, figures in runs.items():
        cells = [_column(figures, key, digits) for key, digits in
                 (("appends_per_s", 0), ("disk_per_s", 0), ("burst_commits", 0), ("fsyncs", 0),
                  ("steady_commits_per_s", 1))]
        print(f"| {mode} | {' | '.join(cells)} |")
    print(host_line(before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
