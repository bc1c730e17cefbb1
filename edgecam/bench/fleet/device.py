"""One worker process of the fleet load test (edgecam/bench/fleet/load.py starts several).

Runs ``--child`` simulated devices, each edgecam's real MqttSink, and paces them: at every
tick each device publishes one result, and now and then a region state change. At the end
it waits for its queues and outboxes to drain and prints one JSON line for the parent:
when each result was handed to its sink, the state changes sent, counters and CPU time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
DRAIN_S = 30.0  # after the last publish: how long devices wait for their queues and outboxes to empty


def run_devices(args: argparse.Namespace) -> dict[str, Any]:
    """One worker process: ``args.child`` devices (ids from ``args.first``), paced publishing."""
    sys.path.insert(0, str(REPO))
    from edgecam.config import parse_config
    from edgecam.model.types import Label
    from edgecam.publish.mqtt import MqttSink
    from edgecam.regions.debounce import RegionState
    from edgecam.result import Result

    ids = [f"fleet-{n:03d}" for n in range(args.first, args.first + args.child)]
    sinks = []
    for device in ids:
        config = parse_config({"device_id": device, "mqtt": {
            "host": HOST, "port": args.port, "qos": args.qos, "queue_size": 2000, "keepalive_s": 30,
            "protocol": args.device_protocol, "reconnect": {"initial_s": 1.0, "max_s": 2.0},
            "outbox": {"path": str(Path(args.workdir) / f"outbox-{device}.sqlite3")}}}, "<fleet>")
        sink = MqttSink(config)
        sink.start()
        sinks.append(sink)
    deadline = time.monotonic() + 20
    while not all(s.connected for s in sinks) and time.monotonic() < deadline:
        time.sleep(0.05)
    cpu0 = os.times()
    sent_at: dict[str, list[float]] = {d: [] for d in ids}
    states: dict[str, list[str]] = {d: [] for d in ids}
    labels = (Label("tabby", 281, 0.82), Label("tiger cat", 282, 0.1), Label("lynx", 287, 0.03))
    period, start = 1.0 / args.rate, args.start_at
    while time.monotonic() < start:
        time.sleep(0.01)
    tick, late = 0, 0
    state_ticks = max(1, round(args.state_every * args.rate))
    while True:
        due = start + tick * period
        now = time.monotonic()
        if due >= start + args.seconds:
            break
        if due > now:
            time.sleep(due - now)
        elif now - due > period:
            late += 1
        for index, (device, sink) in enumerate(zip(ids, sinks)):
            t = time.monotonic()
            seq = len(sent_at[device])
            sink.publish_result(Result(device, "fleet", seq, t, time.time(), t, t, labels, "simulated", "int8", 160,
                                       640, 480, handed_mono=t))
            sent_at[device].append(t)
            if (tick + index * 7) % state_ticks == 0:  # staggered over the fleet
                n = len(states[device])
                label = ("open", "closed")[n % 2]
                state = RegionState(label, n % 2, 0.9, time.time(), (Label(label, n % 2, 0.9),),
                                    None if n == 0 else ("open", "closed")[(n + 1) % 2])
                payload = state.to_payload(device, "gate", "door")
                sink.publish_region_state(payload)
                states[device].append(payload["since"])
        tick += 1
    drained = _drain(sinks, time.monotonic() + DRAIN_S)
    cpu1 = os.times()
    counters = {d: s.counters() for d, s in zip(ids, sinks)}
    for sink in sinks:
        sink.stop()
    return {"sent_at": sent_at, "states": states, "counters": counters, "drained": drained, "late_ticks": late,
            "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)}


def _drain(sinks: list[Any], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if all(c["queued"] == 0 and c["outbox"]["pending"] == 0 for c in (s.counters() for s in sinks)):
            return True
        time.sleep(0.1)
    return False
