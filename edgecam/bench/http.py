#!/usr/bin/env python3
"""HTTP load benchmark: closed-loop clients POST a 640x480 JPEG to /classify
while the daemon classifies its demo camera.

    .venv/bin/python -m edgecam.bench.http [--model FILE] [--seconds 10] [--clients 1,4,16,64]
                                           [--url http://127.0.0.1:8080]

Without --url it starts `edgecam run` on the demo source (30 FPS) with the web
preview on a free port and MQTT off, measures the camera's result rate idle,
then runs each client count for --seconds and prints one table: requests per
second, p50/p99 latency of the 200s, errors (anything but 200 and 503), 503s,
and the camera's result rate during the load. Each client sends one request
per connection (the server speaks HTTP/1.0) and waits Retry-After after a 503.

Targets (issue 11): at 64 clients p99 <= 3x p50, no errors besides 503s, the
camera keeps >= 90% of its idle result rate.

--bombs (with the daemon) also posts decompression bombs and a 150,000-part
form and prints, per upload: the status, the time to the answer and the
daemon's peak RSS (VmHWM) after it.

Importable (for the reliability harness): ``run_load(...) -> LoadResult`` and
``DemoDaemon``: ``from edgecam.bench.http import run_load``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from edgecam.bench.pipeline import DEFAULT_MODEL, ensure_model, frames

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LoadResult:
    clients: int
    seconds: float = 0.0  # wall time from the first request to the last answer
    ok: int = 0
    busy: int = 0  # 503s
    errors: Counter = field(default_factory=Counter)  # kind -> count: other statuses, resets, timeouts
    latencies_ms: list[float] = field(default_factory=list)  # of the 200s

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def qps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]


def _request(host: str, port: int, path: str, body: bytes, content_type: str) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


async def _client(host: str, port: int, request: bytes, stop_at: float, timeout_s: float,
                  honor_retry_after: bool, result: LoadResult) -> None:
    while time.monotonic() < stop_at:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
            try:
                writer.write(request)
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(), timeout_s)  # HTTP/1.0: until the server closes
            finally:
                writer.close()
            status = int(answer.split(b" ", 2)[1])
        except (OSError, asyncio.TimeoutError, ValueError, IndexError) as err:
            result.errors[type(err).__name__] += 1
            continue
        elapsed_ms = (time.monotonic() - started) * 1000.0
        if status == 200 and b'"top"' in answer:
            result.ok += 1
            result.latencies_ms.append(elapsed_ms)
        elif status == 503:
            result.busy += 1
            retry = re.search(rb"\r\nRetry-After: (\d+)\r\n", answer)
            if honor_retry_after and retry:
                await asyncio.sleep(min(float(retry.group(1)), max(0.0, stop_at - time.monotonic())))
        else:
            result.errors[f"HTTP {status}"] += 1


def run_load(host: str, port: int, clients: int, seconds: float, body: bytes, content_type: str = "image/jpeg",
             path: str = "/classify", timeout_s: float = 30.0, honor_retry_after: bool = True) -> LoadResult:
    """``clients`` closed-loop clients, each posting ``body`` again as soon as
    its previous answer arrived, for ``seconds``. Blocks; runs its own event loop."""
    result = LoadResult(clients)
    request = _request(host, port, path, body, content_type)

    async def main() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(_client(host, port, request, stop_at, timeout_s, honor_retry_after, result)
                               for _ in range(clients)))

    started = time.monotonic()
    asyncio.run(main())
    result.seconds = time.monotonic() - started
    return result


class DemoDaemon:
    """`edgecam run` on the demo camera with the web preview on a free port;
    counts the result lines it prints (the camera's result rate)."""

    def __init__(self, model: Path, threads: int = 2, preview: Optional[dict] = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="edgecam-bench-http-")
        config = Path(self._dir.name) / "config.yaml"
        config.write_text(json.dumps({  # JSON is YAML
            "source": {"uri": "demo", "fps": 30}, "mqtt": {"enabled": False},
            "model": {"path": str(model), "threads": threads},
            "preview": {"http": {"enabled": True, "port": 0, **(preview or {})}}}))
        self.proc = subprocess.Popen([sys.executable, "-m", "edgecam", "run", "--config", str(config)], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.results = 0
        self.port: Optional[int] = None
        self._port_seen = threading.Event()
        threading.Thread(target=self._count, daemon=True).start()
        threading.Thread(target=self._watch_log, daemon=True).start()
        if not self._port_seen.wait(120):
            self.stop()
            raise RuntimeError("the daemon's web preview did not start")

    def _count(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.startswith("{"):
                self.results += 1

    def _watch_log(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            found = re.search(r"web preview on http://[^:]+:(\d+)/", line)
            if found:
                self.port = int(found.group(1))
                self._port_seen.set()
            elif "WARNING" in line or "ERROR" in line:
                print("daemon: " + line.rstrip(), file=sys.stderr)

    def result_rate(self, seconds: float) -> float:
        before, started = self.results, time.monotonic()
        time.sleep(seconds)
        return (self.results - before) / (time.monotonic() - started)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._dir.cleanup()


def peak_rss_mb(pid: int) -> float:
    found = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(found.group(1)) / 1024 if found else float("nan")


def hostile_uploads() -> list[tuple[str, bytes, str]]:
    """(description, body, content type): bombs and the many-parts form of issue 11."""
    from edgecam.bench import bombs

    part = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n'
    form = part * 150_000 + b"--b--\r\n"
    return [("PNG 20000x20000", bombs.png(20000, 20000), "image/png"),
            ("PNG 30000x30000", bombs.png(30000, 30000), "image/png"),
            ("JPEG 20000x20000", bombs.jpeg(20000, 20000), "image/jpeg"),
            ("form, 150,000 parts", form, "multipart/form-data; boundary=b")]


def throw_uploads(port: int, pid: int,
                  uploads: list[tuple[str, bytes, str]]) -> list[tuple[str, int, int, float, float]]:
    """Post each upload once: (description, bytes, status, seconds, daemon peak RSS MB after)."""
    import http.client

    rows = []
    for name, body, content_type in uploads:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        started = time.monotonic()
        conn.request("POST", "/classify", body=body, headers={"Content-Type": content_type})
        status = conn.getresponse().status
        rows.append((name, len(body), status, time.monotonic() - started, peak_rss_mb(pid)))
        conn.close()
    return rows


def sample_jpeg() -> bytes:
    import cv2

    return cv2.imencode(".jpg", frames(1)[0], [int(cv2.IMWRITE_JPEG_QUALITY), 90])[1].tobytes()


def _cpu() -> str:
    names = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    return f"{names[0] if names else platform.processor()} x{os.cpu_count()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2, help="model.threads of the daemon")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--url", help="load a running server instead (camera rate not measured)")
    parser.add_argument("--bombs", action="store_true", help="also post bombs and a 150,000-part form")
    args = parser.parse_args()
    body = sample_jpeg()
    daemon: Optional[DemoDaemon] = None
    if args.url:
        parts = urlsplit(args.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
    else:
        daemon = DemoDaemon(ensure_model(args.model), args.threads)
        host, port = "127.0.0.1", daemon.port or 0
    rates = {"idle": 0.0, "idle_rss": float("nan")}
    rows = []
    hostile: list[tuple[str, int, int, float, float]] = []
    try:
        if daemon:
            time.sleep(3)  # model warm-up
            rates["idle"] = daemon.result_rate(args.seconds / 2)
            rates["idle_rss"] = peak_rss_mb(daemon.proc.pid)
        run_load(host, port, 2, 1.0, body)  # warm the upload path
        for clients in (int(c) for c in args.clients.split(",")):
            before = daemon.results if daemon else 0
            result = run_load(host, port, clients, args.seconds, body)
            rate = (daemon.results - before) / result.seconds if daemon else float("nan")
            rows.append((result, rate, peak_rss_mb(daemon.proc.pid) if daemon else float("nan")))
        if daemon and args.bombs:
            hostile = [("(idle)", 0, 0, 0.0, peak_rss_mb(daemon.proc.pid))]
            hostile += throw_uploads(port, daemon.proc.pid, hostile_uploads())
    finally:
        if daemon:
            daemon.stop()
    print(f"# {len(body)}-byte 640x480 JPEG, {args.seconds:g} s per row, host CPU: {_cpu()}, "
          f"model {args.model.name} ({args.threads} threads), camera idle: {rates['idle']:.1f} results/s, "
          f"daemon peak RSS idle: {rates['idle_rss']:.0f} MB")
    print("| clients | QPS | p50 | p99 | p99/p50 | errors | 503s | camera results/s (of idle) | daemon peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for result, rate, peak in rows:
        share = f"{rate:.1f} ({100 * rate / rates['idle']:.0f}%)" if rates["idle"] else "-"
        errors = ", ".join(f"{k}: {v}" for k, v in result.errors.items()) or "0"
        p50, p99 = result.percentile(50), result.percentile(99)
        print(f"| {result.clients} | {result.qps:.0f} | {p50:.1f} ms | {p99:.1f} ms | {p99 / p50:.1f} | {errors} "
              f"| {result.busy} | {share} | {peak:.0f} MB |")
    if hostile:
        print("\n| upload | bytes | status | answered in | daemon peak RSS |")
        print("|---|---|---|---|---|")
        for name, size, status, seconds, peak in hostile:
            print(f"| {name} | {size:,} | {status or '-'} | {seconds:.3f} s | {peak:.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
