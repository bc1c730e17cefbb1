#!/usr/bin/env python3
"""Fleet load test: many simulated devices, one Mosquitto on loopback, a shared consumer group.

    .venv/bin/python -m edgecam.bench.fleet.load                      # 50 devices x 30 results/s, 30 s
    .venv/bin/python -m edgecam.bench.fleet.load --restart-at 15      # the broker restarts mid-run
    .venv/bin/python -m edgecam.bench.fleet.load --devices 5 --seconds 5 --json out.json

Every device is edgecam's real MqttSink (its paho client, result queue and durable outbox
on disk), driven by a pacing thread instead of a camera: ``--rate`` results a second
(Result objects shaped like the classifier's) and a region state change every
``--state-every`` seconds. Devices run as threads in ``--procs`` worker processes. A
private Mosquitto (persistence on, started here on a free 127.0.0.1 port) carries it all
to ``--consumers`` ``edgecam listen --share fleet --states --json`` processes with
persistent sessions, which split the load.

Reported: messages per second delivered, end-to-end latency (the device's
``publish_result`` call -> the consumer's JSON line read here) p50/p99, CPU of the
broker, the device processes and the consumers (% of one core over the run),
per-device sequence gaps and duplicates, state changes lost. Targets at QoS 1: 0 lost;
with the broker restarted mid-run, 0 state changes lost. Exit status 0 when the targets
hold, 1 when not, 2 on a setup failure. Loopback only; the whole run ends by itself
within --seconds + 120 s (everything still running then is killed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecam.bench.common import cpu_name, load
from edgecam.bench.fleet.device import run_devices

REPO = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
GROUP = "fleet"
GRACE_S = 120.0  # beyond --seconds, the hard limit for the whole run


def fail(message: str) -> None:
    """A setup failure (no broker, a process that died): exit status 2."""
    print(f"fleet_load: {message}", file=sys.stderr)
    raise SystemExit(2)


# ----------------------------------------------------------------------------- broker and consumers
class Mosquitto:
    """A private broker with persistence, so consumers' sessions survive a restart."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(exe):
            fail("mosquitto not found: apt-get install -y mosquitto")
        self.exe, self.dir = exe, workdir
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join([
            f"listener {self.port} {HOST}", "allow_anonymous true", "persistence true",
            f"persistence_location {workdir}/", "autosave_interval 3600",
            # Consumers' queues must hold what arrives while one of them is away.
            "max_queued_messages 1000000", "max_queued_bytes 0",
            f"log_dest file {workdir / 'mosquitto.log'}", "user root"]) + "\n")
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.cpu_s = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        fail("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.cpu_s += proc_cpu_s(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc = None


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a running process, in seconds (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Consumer:
    """``edgecam listen --share``: every JSON line it prints, stamped when read here."""

    def __init__(self, index: int, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecam", "listen", "--host", HOST, "--port", str(port), "--share", GROUP,
             "--states", "--json", "--qos", "1", "--client-id", f"fleet-consumer-{index}", "--session-expiry", "600"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.listening = threading.Event()
        self.cpu_s = self.cpu_base = 0.0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._watch_stderr, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line))

    def _watch_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "listening on" in line:
                self.listening.set()

    def stop(self) -> None:
        self.cpu_s = proc_cpu_s(self.proc.pid) - self.cpu_base
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ----------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> dict[str, Any]:
    hard_deadline = time.monotonic() + args.seconds + GRACE_S
    workdir = Path(tempfile.mkdtemp(prefix="edgecam-fleet-"))
    broker = Mosquitto(workdir)
    broker.start()
    consumers = [Consumer(i, broker.port) for i in range(args.consumers)]
    children: list[subprocess.Popen[str]] = []
    try:
        for consumer in consumers:
            if not consumer.listening.wait(20):
                fail("a consumer never subscribed")
        start_at = time.monotonic() + 3.0 + 0.05 * args.devices  # time for every device to connect
        per = -(-args.devices // args.procs)
        for first in range(0, args.devices, per):
            count = min(per, args.devices - first)
            children.append(subprocess.Popen(
                [sys.executable, "-m", "edgecam.bench.fleet.load", "--child", str(count), "--first", str(first),
                 "--port", str(broker.port),
                 "--start-at", repr(start_at), "--workdir", str(workdir), "--rate", str(args.rate),
                 "--seconds", str(args.seconds), "--state-every", str(args.state_every), "--qos", str(args.qos),
                 "--device-protocol", args.device_protocol],
                cwd=REPO, stdout=subprocess.PIPE, stderr=open(workdir / f"devices-{first}.log", "w"), text=True))
        restart = _restart_later(broker, start_at + args.restart_at) if args.restart_at is not None else None
        time.sleep(max(0.0, start_at - time.monotonic()))
        broker.cpu_s -= proc_cpu_s(broker.proc.pid) if broker.proc else 0.0  # count from the start of the run
        for consumer in consumers:
            consumer.cpu_base = proc_cpu_s(consumer.proc.pid)
        outputs = [_collect(child, hard_deadline) for child in children]
        if restart is not None:
            restart.join()
        expected = sum(len(seqs) for out in outputs for seqs in out["sent_at"].values()) + \
            sum(len(s) for out in outputs for s in out["states"].values())
        _wait_quiet(consumers, expected, min(hard_deadline, time.monotonic() + 30))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        for consumer in consumers:
            consumer.stop()
        broker.stop()
    report = analyse(args, outputs, consumers, broker, start_at)
    report["restart_downtime_s"] = getattr(restart, "downtime_s", None)
    if args.keep:
        print(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def _restart_later(broker: Mosquitto, at: float) -> threading.Thread:
    def restart() -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        began = time.monotonic()
        broker.stop()
        broker.start()
        thread.downtime_s = round(time.monotonic() - began, 3)  # type: ignore[attr-defined]

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    return thread


def _collect(child: subprocess.Popen[str], deadline: float) -> dict[str, Any]:
    try:
        out, _ = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        child.kill()
        fail("a device process did not finish in time")
    if child.returncode != 0:
        fail(f"a device process failed (exit {child.returncode}); see devices-*.log in the work directory")
    return json.loads(out.strip().splitlines()[-1])


def _wait_quiet(consumers: list[Consumer], expected: int, deadline: float) -> None:
    """Until every message arrived, or nothing new came for 3 s (then something is lost)."""
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        total = sum(len(c.lines) for c in consumers)
        if total >= expected:
            time.sleep(0.5)  # duplicates, if any, would be here by now
            return
        if total != last:
            last, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > 3.0:
            return
        time.sleep(0.1)


def analyse(args: argparse.Namespace, outputs: list[dict], consumers: list[Consumer], broker: Mosquitto,
            start_at: float) -> dict[str, Any]:
    sent_at = {d: t for out in outputs for d, t in out["sent_at"].items()}
    states_sent = {d: s for out in outputs for d, s in out["states"].items()}
    seen: dict[str, list[int]] = {d: [] for d in sent_at}
    states_seen: dict[str, list[str]] = {d: [] for d in sent_at}
    latencies, last_arrival = [], start_at
    for consumer in consumers:
        for arrived, line in consumer.lines:
            payload = json.loads(line)
            device = payload["device"]
            if "since" in payload:
                states_seen[device].append(payload["since"])
            else:
                seen[device].append(payload["seq"])
                latencies.append((arrived - sent_at[device][payload["seq"]]) * 1000.0)
            last_arrival = max(last_arrival, arrived)
    gaps = {d: len(set(range(len(sent_at[d]))) - set(seqs)) for d, seqs in seen.items()}
    dups = sum(len(seqs) - len(set(seqs)) for seqs in seen.values())
    states_lost = sum(len(set(states_sent[d]) - set(states_seen[d])) for d in states_sent)
    states_dup = sum(len(s) - len(set(s)) for s in states_seen.values())
    results_sent = sum(len(t) for t in sent_at.values())
    delivered = sum(len(c.lines) for c in consumers)
    window = max(last_arrival - start_at, 1e-6)
    lat = np.asarray(latencies) if latencies else np.asarray([float("nan")])
    counters = [c for out in outputs for c in out["counters"].values()]
    lost = sum(gaps.values())
    report = {
        "devices": args.devices, "device_protocol": args.device_protocol, "rate": args.rate, "seconds": args.seconds,
        "qos": args.qos,
        "restart_at": args.restart_at, "results_sent": results_sent,
        "states_sent": sum(len(s) for s in states_sent.values()), "delivered": delivered,
        "msgs_per_s": round(delivered / window, 1),
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 2), "p99": round(float(np.percentile(lat, 99)), 2),
                       "max": round(float(np.max(lat)), 2)},
        "cpu_percent": {"broker": round(100 * broker.cpu_s / window, 1),
                        "devices": round(100 * sum(o["cpu_s"] for o in outputs) / window, 1),
                        "consumers": round(100 * sum(c.cpu_s for c in consumers) / window, 1)},
        "results_lost": lost, "devices_with_gaps": sum(1 for g in gaps.values() if g), "duplicates": dups,
        "states_lost": states_lost, "state_duplicates": states_dup,
        "device_drops": sum(c["dropped"] + c["expired"] for c in counters),
        "outbox_evicted": sum(c["outbox"]["evicted"] for c in counters),
        "late_ticks": sum(o["late_ticks"] for o in outputs), "drained": all(o["drained"] for o in outputs),
        "per_consumer": [len(c.lines) for c in consumers],
    }
    report["targets_met"] = states_lost == 0 and (args.restart_at is not None or lost == 0)
    return report


def print_report(report: dict[str, Any], load_before: str) -> None:
    lat, cpu = report["latency_ms"], report["cpu_percent"]
    restart = "no" if report["restart_at"] is None else f"at {report['restart_at']:g} s " \
        f"(down {report['restart_downtime_s']} s)"
    print(f"\n{report['devices']} devices (MQTT {report['device_protocol']}) x {report['rate']:g} results/s + state "
          f"changes, {report['seconds']:g} s, QoS {report['qos']}, broker restart: {restart}")
    print(f"host: {cpu_name()}, {os.cpu_count()} CPUs; load average {load_before} before, {load()} after\n")
    print("| msgs/s delivered | latency p50 ms | p99 ms | CPU broker % | CPU devices % | CPU consumers % "
          "| results lost (devices with gaps) | duplicates | state changes sent | lost |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {report['msgs_per_s']} | {lat['p50']} | {lat['p99']} | {cpu['broker']} | {cpu['devices']} | "
          f"{cpu['consumers']} | {report['results_lost']} ({report['devices_with_gaps']}) | "
          f"{report['duplicates'] + report['state_duplicates']} | {report['states_sent']} | {report['states_lost']} |")
    print(f"\nsent {report['results_sent']} results + {report['states_sent']} state changes; delivered "
          f"{report['delivered']} (consumers: {report['per_consumer']}); device-side drops {report['device_drops']}, "
          f"outbox evictions {report['outbox_evicted']}, late pacing ticks {report['late_ticks']}, "
          f"queues drained: {report['drained']}")
    print("targets (QoS 1: 0 lost; with a restart: 0 state changes lost):",
          "met" if report["targets_met"] else "MISSED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=30.0, help="results per second per device")
    parser.add_argument("--state-every", type=float, default=2.0, help="seconds between a device's state changes")
    parser.add_argument("--seconds", type=float, default=30.0, help="publishing time")
    parser.add_argument("--procs", type=int, default=4, help="device worker processes")
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--device-protocol", choices=("3.1.1", "5"), default="5",
                        help="the devices' MQTT version (the consumers use 5 for the shared subscription)")
    parser.add_argument("--restart-at", type=float, help="restart the broker this many seconds into the run")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (broker and device logs)")
    for name, kind in (("--child", int), ("--first", int), ("--port", int), ("--start-at", float), ("--workdir", str)):
        parser.add_argument(name, type=kind, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        signal.alarm(int(args.seconds + GRACE_S))  # a device process never outlives the run
        print(json.dumps(run_devices(args)), flush=True)
        return
    if min(args.devices, args.procs, args.consumers) < 1 or args.rate <= 0 or args.seconds <= 0:
        fail("--devices, --procs, --consumers, --rate and --seconds must be positive")
    load_before = load()
    report = run(args)
    print_report(report, load_before)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    sys.exit(0 if report["targets_met"] else 1)


if __name__ == "__main__":
    main()
