"""A small run of the fleet load test (edgecam/bench/fleet/load.py): real MqttSinks, a real
Mosquitto, two `edgecam listen --share` consumers. No timing is asserted, only that
every message arrives exactly once at QoS 1 and that the report says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_small_fleet_loses_nothing_and_the_group_splits_the_load(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "edgecam.bench.fleet.load", "--devices", "3", "--rate", "5",
                           "--seconds", "3", "--state-every", "1", "--procs", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["results_sent"] == 3 * 15 and report["states_sent"] == 3 * 3
    assert report["delivered"] == report["results_sent"] + report["states_sent"]
    assert (report["results_lost"], report["duplicates"], report["states_lost"], report["state_duplicates"]) == \
        (0, 0, 0, 0)
    assert sum(report["per_consumer"]) == report["delivered"] and min(report["per_consumer"]) > 0
    assert report["drained"] and report["targets_met"]
    assert "| msgs/s delivered | latency p50 ms |" in proc.stdout and "targets" in proc.stdout
