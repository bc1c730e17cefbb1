"""Reliability phases for what a LAN client or a careless user deploys: hostile model files
(reloaded over MQTT) and floods of commands. Results must keep flowing through both.

Each hostile model (edgecam.bench.hostile_models) is written over the file region ``centre``
runs, then the MQTT ``reload`` re-reads the config and the changed file: the model check
must refuse it (a reply naming why), and the camera keeps classifying at its idle rate. The
command flood sends ``capture`` and junk commands as fast as a LAN client can; a ``status``
command must still be answered promptly and results keep flowing.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from edgecam.bench import hostile_models
from edgecam.bench.reliability.watch import Daemon, Subscriber

#: check, measured, limit, ok
Row = Callable[[str, str, str, bool], None]
#: The flood's pace: what a client on the LAN sent in the report (2000 commands in 4 s). The
#: harness shares this machine's CPUs with the daemon, so a faster flood would measure itself.
FLOOD_PER_S = 500.0

HOSTILE: dict[str, Callable[[Path], Path]] = {
    "NaN on real frames": hostile_models.nan_on_real_frames,
    "20000 px input": hostile_models.huge_input,
    "gigabytes when it runs": hostile_models.memory_hog,
    "seconds per frame": hostile_models.slow,
}


def replace_file(source: Path, target: Path) -> None:
    """As a user deploys: write beside it, then rename over it."""
    staged = target.with_name(target.name + ".new")
    shutil.copy(source, staged)
    os.replace(staged, target)


def model_faults(sub: Subscriber, region_model: Path, good: Path, workdir: Path, idle: float, row: Row) -> None:
    for kind, make in HOSTILE.items():
        hostile = make(workdir / "hostile.onnx")
        replace_file(hostile, region_model)
        reply, per_s = _rate_while(sub, lambda: sub.command({"cmd": "reload"}, timeout_s=120))
        answer = reply if isinstance(reply, dict) else {}
        refused = answer.get("ok") is False
        why = str(answer.get("error", "no reply"))
        row(f"deploy a model that takes {kind} (reload): refused, results meanwhile",
            f"{'refused' if refused else 'ACCEPTED'}: {why[-90:]!r}; {per_s:.1f}/s ({per_s / idle:.0%} of idle)",
            "refused, >= 60% of idle", refused and per_s >= 0.6 * idle)
    replace_file(good, region_model)
    reply = sub.command({"cmd": "reload"}, timeout_s=120)
    trusted = _wait_trusted(sub, timeout_s=60)  # until then the model it replaced stays loaded
    row("the good model back (reload), trusted after its probation",
        f"{json.dumps((reply or {}).get('changes'))[:100]}; {'trusted' if trusted else 'still on probation'}",
        "ok, trusted", reply is not None and reply.get("ok") is True and trusted)


def _wait_trusted(sub: Subscriber, timeout_s: float) -> bool:
    """True once no region of the daemon is on probation (its status command says so)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = (sub.command({"cmd": "status"}, timeout_s=10) or {}).get("state", {})
        regions = [r for camera in state.get("cameras", {}).values() for r in camera.get("regions", {}).values()]
        if regions and not any(region.get("probation") for region in regions):
            return True
        time.sleep(1.0)
    return False


def command_flood(sub: Subscriber, daemon: Daemon, idle: float, row: Row, seconds: float = 5.0) -> None:
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        payloads = [json.dumps({"cmd": "capture", "camera": "demo", "region": "full"}).encode(),
                    b'{"cmd": "set", "camera": "demo", "region": "nope", "confirm": 2}', b"{not json"]
        started = time.monotonic()
        while not stop.is_set():
            sub.client.publish(f"{sub.prefix}/cmd", payloads[sent[0] % len(payloads)], qos=0)
            sent[0] += 1
            ahead = sent[0] / FLOOD_PER_S - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    lines_before = len(daemon.log_tail(100000).splitlines())
    flooding = threading.Thread(target=flood, daemon=True)
    flooding.start()
    started = time.monotonic()
    answered = []
    before = sub.result_count()
    while time.monotonic() - started < seconds:
        answered.append(sub.probe(timeout_s=5.0))
        time.sleep(0.5)
    stop.set()
    flooding.join(timeout=5)
    per_s = (sub.result_count() - before) / (time.monotonic() - started)
    worst = max((a if a is not None else float("inf")) for a in answered)
    row(f"command flood ({sent[0]} in {seconds:g} s): status answered within, results meanwhile",
        f"{worst:.2f} s; {per_s:.1f}/s ({per_s / idle:.0%} of idle)", "<= 2 s, >= 60% of idle",
        worst <= 2.0 and per_s >= 0.6 * idle)
    logged = daemon.log_tail(100000).splitlines()[lines_before:]
    rejected = [line for line in logged if "ejected" in line or "refused" in line or "failed" in line]
    row("command flood: log lines about it", f"{len(rejected)} of {len(logged)} new lines",
        f"<= {int(seconds / 10) * 3 + 6}", len(rejected) <= int(seconds / 10) * 3 + 6)


def _rate_while(sub: Subscriber, work: Callable[[], object]) -> tuple[object, float]:
    """``work()``'s outcome, and the results per second received while it ran (at least 2 s)."""
    before, started = sub.result_count(), time.monotonic()
    outcome = work()
    left = 2.0 - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)
    return outcome, (sub.result_count() - before) / (time.monotonic() - started)
