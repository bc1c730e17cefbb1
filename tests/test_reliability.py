"""The reliability harness (edgecam/bench/reliability/run.py --short) as CI runs it, and its own checks.

The short run is about two minutes against a real Mosquitto and a real `edgecam run`; every row of
its table must hold. The unit tests below show that the harness's books can fail: a lost state
change breaks the chain, and a fuzzer reports what breaks its invariant.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgecam.bench.reliability.fuzz import fuzz_configs
from edgecam.bench.reliability.watch import Subscriber

REPO = Path(__file__).resolve().parent.parent

EXPECTED_CHECKS = (
    "start: first result over MQTT", "idle: frames classified", "broker stopped", "HTTP load, 16 clients",
    "HTTP load: camera frames classified", "slow-drip client",
    "bomb thrown in", "fuzzed HTTP requests", "fuzzed MQTT commands", "fuzzed config files",
    "results flow again after the fuzz", "soak", "results: handed to MQTT = received + dropped + expired",
    "region demo/full: state changes received", "region demo/centre: state changes received",
    "SIGTERM", "daemon log: tracebacks",
)


@pytest.mark.timeout(400)
def test_the_short_reliability_run_passes_every_check() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "edgecam.bench.reliability.run", "--short"], cwd=REPO,
                          capture_output=True,
                          text=True, timeout=380)
    took = time.monotonic() - started
    table = [line for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    failed = [line for line in table if line.endswith("| **FAIL** |")]
    assert done.returncode == 0 and not failed, f"{failed}\n{done.stdout}\n{done.stderr[-3000:]}"
    for check in EXPECTED_CHECKS:
        assert any(line.startswith(f"| {check}") for line in table), (check, done.stdout)
    print(done.stdout)
    print(f"short reliability run: {took:.0f} s")


def _subscriber_fed(messages: list[tuple[str, dict]]) -> Subscriber:
    """A Subscriber without a broker, fed messages straight into its callback."""
    sub = Subscriber.__new__(Subscriber)
    sub.prefix = "edgecam/x"
    sub._lock = threading.Lock()
    sub._results, sub._result_times, sub._states, sub._replies = set(), [], {}, {}
    for topic, payload in messages:
        sub._on_message(None, None, SimpleNamespace(topic=topic, payload=json.dumps(payload).encode()))
    return sub


def _state(label: str, since: str, previous: str | None) -> tuple[str, dict]:
    return "edgecam/x/cam/door/state", {"label": label, "since": since, "previous": previous}


def test_state_chain_counts_a_lost_change_as_a_break_and_replays_once() -> None:
    whole = [_state("closed", "t1", None), _state("open", "t2", "closed"), _state("closed", "t3", "open")]
    replayed = whole + [whole[1], whole[2]]  # at-least-once: the outbox resends after a reconnect
    assert _subscriber_fed(replayed).state_chain("cam/door") == (3, 0)
    assert _subscriber_fed([whole[0], whole[2]]).state_chain("cam/door") == (2, 1)  # "open" lost
    assert _subscriber_fed(whole[1:]).state_chain("cam/door") == (2, 1)  # the first change lost


def test_results_are_counted_once_per_topic_and_seq() -> None:
    result = {"seq": 7, "top": []}
    sub = _subscriber_fed([("edgecam/x/cam/door/result", result), ("edgecam/x/cam/door/result", result),
                           ("edgecam/x/cam/yard/result", result), ("edgecam/x/cam/door/result", {"seq": 8})])
    assert sub.result_count() == 3


def test_the_config_fuzzer_reports_a_loader_that_raises_something_else(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecam.bench.reliability import fuzz as reliability_fuzz

    def broken(path):  # type: ignore[no-untyped-def]
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(reliability_fuzz, "load_config", broken)
    outcome = fuzz_configs(tmp_path, examples=5)
    assert outcome.examples == 5 and outcome.failures
    assert outcome.failures[0].startswith("RecursionError")
