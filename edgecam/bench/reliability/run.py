#!/usr/bin/env python3
"""Reliability harness: the daemon as users run it, with everything that goes wrong thrown at it.

    .venv/bin/python -m edgecam.bench.reliability.run --short         # CI: about 2 minutes
    .venv/bin/python -m edgecam.bench.reliability.run --minutes 10    # the long run (a 10-minute soak)

One `edgecam run` (demo camera at 30 FPS, two regions, EfficientNet-Lite0 INT8 with ImageNet
weights so region states really change, MQTT QoS 1 with the durable outbox, the web preview)
against a private Mosquitto on loopback (persistent, so a subscriber's queue survives restarts),
and a subscriber that records every result and region state. In order:

1. the broker stopped and started again several times: results resume, and no state change is lost;
2. HTTP load (bench_http.run_load) with a slow-drip client and a decompression bomb thrown in;
3. fuzzed requests, commands (retained ones included) and config files (edgecam/bench/reliability/fuzz.py);
4. hostile model files deployed by reload, and a flood of commands (edgecam/bench/reliability/deploys.py);
5. a soak: RSS, threads and open files sampled, with growth limits;
6. the books: results the daemon handed over = received + dropped + expired; every region's state
   chain (each change's ``previous`` is the last state received) unbroken and as long as the
   daemon's own count; a clean SIGTERM; no traceback and no foreign line (OpenCV, libpng) in its log.

Prints one markdown table (check, measured, limit, verdict) and the host line; exits 1 on a FAIL.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecam.bench.common import host_line, load
from edgecam.bench.fleet.load import Mosquitto
from edgecam.bench.http import hostile_uploads, run_load, sample_jpeg
from edgecam.bench.reliability import deploys
from edgecam.bench.reliability.fuzz import fuzz_commands, fuzz_configs, fuzz_http
from edgecam.bench.reliability.watch import Daemon, Sampler, Subscriber, http_get

REPO = Path(__file__).resolve().parents[3]

REQUEST_TIMEOUT_S = 3.0
PREFIX = "edgecam/rel"


@dataclass
class Row:
    check: str
    measured: str
    limit: str
    ok: bool


@dataclass(frozen=True)
class Plan:
    restarts: int
    down_s: float
    load_s: float
    fuzz_http: int
    fuzz_commands: int
    fuzz_configs: int
    soak_s: float
    sample_s: float
    rss_growth_mb: float
    flood_s: float
    fixed_examples: bool  # the fuzzers draw the same examples every run (CI), or new ones


def plan(args: argparse.Namespace) -> Plan:
    if args.short:
        return Plan(restarts=3, down_s=2.0, load_s=6.0, fuzz_http=400, fuzz_commands=100, fuzz_configs=300,
                    soak_s=30.0, sample_s=1.0, rss_growth_mb=16.0, flood_s=5.0, fixed_examples=True)
    return Plan(restarts=5, down_s=3.0, load_s=20.0, fuzz_http=1000, fuzz_commands=300, fuzz_configs=1000,
                soak_s=args.minutes * 60.0, sample_s=5.0, rss_growth_mb=16.0, flood_s=30.0,
                fixed_examples=False)


def model_path() -> Path:
    """EfficientNet-Lite0 INT8 160 with ImageNet weights, built (once, cached) by the tests' own
    build options: real weights make the demo's photos change the regions' states."""
    from edgecam.bench.models import build_pair, cached_build_options

    return build_pair(cached_build_options("efficientnet_lite0", "imagenet")).int8


def small_png() -> bytes:
    import cv2

    return cv2.imencode(".png", cv2.resize(sample_jpeg_frame(), (64, 48)))[1].tobytes()


def sample_jpeg_frame():  # type: ignore[no-untyped-def]
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(sample_jpeg(), np.uint8), cv2.IMREAD_COLOR)


def daemon_config(workdir: Path, model: Path, broker_port: int) -> dict[str, Any]:
    return {
        "device_id": "rel", "log_level": "INFO",
        "cameras": {"demo": {"uri": "demo", "fps": 30, "regions": {
            "full": {"confirm": 3},
            "centre": {"box": [0.2, 0.1, 0.8, 0.9], "trigger": "interval", "interval_s": 0.5, "confirm": 2,
                       "model": str(workdir / "centre.onnx")}}}},
        "model": {"path": str(model), "threads": 2},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "qos": 1, "queue_size": 4096, "result_expiry_s": 600,
                 "reconnect": {"initial_s": 0.2, "max_s": 2.0},
                 "outbox": {"path": str(workdir / "outbox.sqlite3")}},
        "preview": {"http": {"enabled": True, "port": 0, "request_timeout_s": REQUEST_TIMEOUT_S}},
        "collect": {"dir": str(workdir / "dataset")},
        "stats": {"interval_s": 5},
    }


class Harness:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.plan = plan(args)
        self.dir = workdir
        self.rows: list[Row] = []
        self.broker = Mosquitto(workdir)
        self.broker.start()
        self.sub = Subscriber(self.broker.port, PREFIX)
        config = workdir / "config.yaml"
        shutil.copy(model_path(), workdir / "centre.onnx")  # region centre's own file: deploys replace it
        config.write_text(json.dumps(daemon_config(workdir, model_path(), self.broker.port)))
        self.daemon = Daemon(config, REPO)
        self.sampler = Sampler(self.daemon.pid, self.plan.sample_s)

    def row(self, check: str, measured: str, limit: str, ok: bool) -> None:
        self.rows.append(Row(check, measured, limit, ok))
        print(f"  {'ok  ' if ok else 'FAIL'} {check}: {measured} (limit {limit})", file=sys.stderr, flush=True)

    # -- phases -----------------------------------------------------------------------------

    def start(self) -> float:
        started = time.monotonic()
        first = self.sub.wait_results(1, timeout_s=180)
        self.row("start: first result over MQTT", f"{time.monotonic() - started:.1f} s", "180 s", first)
        if not first:
            raise SystemExit(f"no result: daemon log:\n{self.daemon.log_tail()}")
        time.sleep(3)
        self._warm_up()
        self.sampler.start()
        idle = self.daemon.classify_rate(4.0)
        self.row("idle: frames classified", f"{idle:.1f}/s", "> 20", idle > 20)
        return idle

    def _warm_up(self) -> None:
        """One of each request before the first sample: the pools the daemon starts on first use
        (the web app's classify threads, OpenCV's own) must not count as growth; leaks would."""
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.daemon.http_port, timeout=30)
        connection.request("POST", "/classify", body=sample_jpeg(), headers={"Content-Type": "image/jpeg"})
        connection.getresponse().read()
        connection.close()
        http_get(self.daemon.http_port, "/api/latest")

    def broker_restarts(self) -> None:
        times = []
        for _ in range(self.plan.restarts):
            self.broker.stop()
            time.sleep(self.plan.down_s)
            self.broker.start()
            restarted = time.monotonic()
            times.append(self.sub.wait_result_after(restarted, timeout_s=20) - restarted)
        worst = max(times)
        self.row(f"broker stopped {self.plan.down_s:g} s and restarted x{self.plan.restarts}: first result after",
                 ", ".join(f"{t:.1f}" for t in times) + " s", "<= 10 s each", worst <= 10)

    def http_load(self, idle_rate: float) -> None:
        port = self.daemon.http_port
        drip = threading.Thread(target=self._slow_drip, args=(port,), daemon=True)
        bomb: list[tuple[str, int, float]] = []
        thrower = threading.Timer(self.plan.load_s / 2, lambda: bomb.extend(self._throw_bomb(port)))
        drip.start()
        thrower.start()
        classified_before, started = self.daemon.classified(), time.monotonic()
        load_result = run_load("127.0.0.1", port, 16, self.plan.load_s, sample_jpeg())
        rate = (self.daemon.classified() - classified_before) / (time.monotonic() - started)
        thrower.join()
        drip.join(REQUEST_TIMEOUT_S + 10)
        p50, p99 = load_result.percentile(50), load_result.percentile(99)
        self.row("HTTP load, 16 clients: answers other than 200/503",
                 f"{load_result.error_count} ({load_result.ok} x 200, {load_result.busy} x 503, p50 {p50:.0f} ms, "
                 f"p99 {p99:.0f} ms)", "0", load_result.error_count == 0 and load_result.ok > 0)
        self.row("HTTP load: camera frames classified", f"{rate:.1f}/s ({100 * rate / idle_rate:.0f}% of idle)",
                 ">= 80% of idle", rate >= 0.8 * idle_rate)
        self.row("slow-drip client (1 byte / 0.5 s) cut off after", self._drip_result,
                 f"HTTP 408 by {REQUEST_TIMEOUT_S + 2:g} s", self._drip_ok)
        name, status, seconds = bomb[0] if bomb else ("bomb", 0, float("inf"))
        self.row(f"bomb thrown in ({name})", f"HTTP {status} in {seconds:.2f} s", "413 within 2 s",
                 status == 413 and seconds < 2)

    _drip_result, _drip_ok = "not run", False

    def _slow_drip(self, port: int) -> None:
        import socket

        request = b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 100 + b"\r\n\r\n"
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT_S + 10) as sock:
            try:
                for byte in request:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.5)
            except OSError:
                pass
            try:
                answer = sock.recv(100)
            except OSError as err:
                answer = repr(err).encode()
        took = time.monotonic() - started
        self._drip_result = f"{answer[:12].decode('latin-1')!r} after {took:.1f} s"
        self._drip_ok = answer.startswith(b"HTTP/1.0 408") and took <= REQUEST_TIMEOUT_S + 2

    @staticmethod
    def _throw_bomb(port: int) -> list[tuple[str, int, float]]:
        import http.client

        name, body, content_type = hostile_uploads()[0]
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", "/classify", body=body, headers={"Content-Type": content_type})
            status = conn.getresponse().status
        except OSError:
            status = 0
        finally:
            conn.close()
        return [(name, status, time.monotonic() - started)]

    def fuzz(self) -> None:
        samples = {"jpeg": sample_jpeg(), "png": small_png(), "bomb": hostile_uploads()[0][1][:4096]}
        alive = lambda: self.daemon.alive  # noqa: E731
        fixed = self.plan.fixed_examples
        http = fuzz_http(self.daemon.http_port, samples, self.plan.fuzz_http, REQUEST_TIMEOUT_S + 5, alive, fixed)
        commands = fuzz_commands(self.sub.publish_command, self.sub.probe, self.plan.fuzz_commands, alive, fixed)
        self.sub.publish_command(b"", True)  # clear a retained command the fuzzer left
        configs = fuzz_configs(self.dir, self.plan.fuzz_configs, fixed=fixed)
        for outcome in (http, commands, configs):
            self.row(f"fuzzed {outcome.name}: examples broken", f"{len(outcome.failures)} of {outcome.examples} "
                     f"({outcome.seconds:.0f} s){': ' + '; '.join(outcome.failures) if outcome.failures else ''}",
                     "0", not outcome.failures and outcome.examples > 0)
        for payload in ({"cmd": "resume"}, {"cmd": "set", "max_fps": 0, "min_score": 0, "policy": "every",
                                            "smoothing": 1}):
            self.sub.publish_command(json.dumps(payload).encode(), False)
        flowing = self.sub.wait_result_after(time.monotonic(), timeout_s=15)
        self.row("results flow again after the fuzz (resume, default settings)",
                 "yes" if flowing < float("inf") else "no", "within 15 s", flowing < float("inf"))

    def deploys(self, idle: float) -> None:
        deploys.model_faults(self.sub, self.dir / "centre.onnx", model_path(), self.dir, idle, self.row)
        deploys.command_flood(self.sub, self.daemon, idle, self.row, seconds=self.plan.flood_s)

    def soak(self) -> None:
        mark = len(self.sampler.samples)
        end = time.monotonic() + self.plan.soak_s
        while time.monotonic() < end:  # the page's own polling, as a browser left open would do
            http_get(self.daemon.http_port, "/api/latest")
            time.sleep(1.0)
        rss, threads, fds = self.sampler.growth(mark)
        self.row(f"soak {self.plan.soak_s / 60:.1f} min: RSS growth (first vs last 20% of samples)",
                 f"{rss:+.1f} MB", f"<= {self.plan.rss_growth_mb:g} MB", rss <= self.plan.rss_growth_mb)
        self.row("soak: threads / open files growth", f"{threads:+d} / {fds:+d}", "<= 1 / <= 4",
                 threads <= 1 and fds <= 4)
        whole = self.sampler.growth(0)
        self.row("whole run: RSS / threads / open files, first vs last samples",
                 f"{whole[0]:+.1f} MB / {whole[1]:+d} / {whole[2]:+d} (peak RSS {self.sampler.peak_rss():.0f} MB)",
                 "threads <= 1, files <= 4", whole[1] <= 1 and whole[2] <= 4)

    def books(self) -> None:
        self.sub.publish_command(b'{"cmd": "pause"}', False)
        stats = self.daemon.settled_stats(self.sub)
        received = self.sub.result_count()
        # Results the publisher's queue dropped (inference outran it) were never handed to MQTT:
        # the books balance what MQTT was given against what arrived, dropped or expired there.
        handed, dropped, expired = stats["published"], stats["mqtt_dropped"], stats["publish_expired"]
        before = stats["publish_dropped"] - dropped
        self.row("results: handed to MQTT = received + dropped + expired",
                 f"{handed} = {received} + {dropped} + {expired} ({before} dropped before MQTT)", "equal",
                 handed == received + dropped + expired)
        for region, counters in sorted(stats["regions"].items()):
            chain, breaks = self.sub.state_chain(region)
            self.row(f"region {region}: state changes received, chain breaks",
                     f"{chain} of {counters['changes']}, {breaks} breaks", "all, 0 breaks",
                     chain == counters["changes"] and breaks == 0 and chain > 0)

    def finish(self) -> None:
        code, seconds = self.daemon.terminate()
        self.row("SIGTERM: exit code, time", f"{code}, {seconds:.1f} s", "0, <= 5 s", code == 0 and seconds <= 5)
        tracebacks, foreign = self.daemon.log_problems()
        self.row("daemon log: tracebacks / lines not from edgecam's logger", f"{tracebacks} / {len(foreign)}"
                 + (f" (first: {foreign[0][:120]!r})" if foreign else ""), "0 / 0", tracebacks == 0 and not foreign)

    def close(self) -> None:
        if not all(row.ok for row in self.rows) or not self.daemon.alive:
            print(f"daemon log (last 40 lines):\n{self.daemon.log_tail(40)}", file=sys.stderr)
        self.sampler.stop()
        self.daemon.kill()
        self.sub.close()
        self.broker.stop()


def print_table(rows: list[Row], load_before: str, started: float) -> None:
    print("| check | measured | limit | verdict |")
    print("|---|---|---|---|")
    for row in rows:
        measured = row.measured.replace("|", "\\|")
        print(f"| {row.check} | {measured} | {row.limit} | {'ok' if row.ok else '**FAIL**'} |")
    print(f"\n{host_line(load_before)}; {time.monotonic() - started:.0f} s in all")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--short", action="store_true", help="the CI run: about 2 minutes")
    group.add_argument("--minutes", type=float, default=10.0, help="soak length of the long run (default 10)")
    args = parser.parse_args()
    load_before, started = load(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgecam-reliability-") as tmp:
        harness = Harness(args, Path(tmp))
        try:
            idle = harness.start()
            harness.broker_restarts()
            harness.http_load(idle)
            harness.fuzz()
            harness.deploys(idle)
            harness.soak()
            harness.books()
            harness.finish()
        finally:
            harness.close()
    print_table(harness.rows, load_before, started)
    return 0 if all(row.ok for row in harness.rows) else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
