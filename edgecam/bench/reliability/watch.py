"""What the reliability harness watches: the daemon process, its resources, and a subscriber.

``Daemon`` runs `edgecam run` and keeps its log; ``Sampler`` reads its RSS, threads and open
files from /proc; ``Subscriber`` is a persistent-session paho client that records every result
(deduplicated: QoS 1 may deliver twice) and every region state change, and sends commands.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def http_get(port: int, path: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


class Daemon:
    """`edgecam run --config FILE`, its stderr kept line by line."""

    def __init__(self, config: Path, cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edgecam", "run", "--config", str(config)], cwd=cwd,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self.http_port = 0
        self._port_seen = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._port_seen.wait(180):
            self.kill()
            raise SystemExit(f"the daemon's web preview did not start:\n{self.log_tail()}")

    def _read_log(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))
            found = re.search(r"web preview on http://[^:]+:(\d+)/", line)
            if found:
                self.http_port = int(found.group(1))
                self._port_seen.set()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, count: int = 30) -> str:
        return "\n".join(self.lines[-count:])

    def log_problems(self) -> tuple[int, list[str]]:
        """(tracebacks, lines that are not edgecam log records: OpenCV's or a library's own output)."""
        tracebacks = sum(line.startswith("Traceback") for line in self.lines)
        return tracebacks, [line for line in self.lines if line and not _LOG_LINE.match(line)]

    def stats(self) -> dict[str, Any]:
        status, body = http_get(self.http_port, "/api/latest")
        return json.loads(body)["stats"] if status == 200 else {}

    def classified(self) -> int:
        """Frames the daemon classified so far, over all cameras (its own counter)."""
        return sum(camera["processed"] for camera in self.stats().get("cameras", {}).values())

    def classify_rate(self, seconds: float) -> float:
        before, started = self.classified(), time.monotonic()
        time.sleep(seconds)
        return (self.classified() - before) / (time.monotonic() - started)

    def settled_stats(self, sub: "Subscriber", timeout_s: float = 30.0) -> dict[str, Any]:
        """The counters once nothing is in flight: queues empty, outbox acknowledged, and the
        subscriber's count still for 2 s (call after pausing)."""
        deadline, last, still_since = time.monotonic() + timeout_s, -1, time.monotonic()
        while True:
            stats, count = self.stats(), sub.result_count()
            if count != last:
                last, still_since = count, time.monotonic()
            settled = (stats.get("queue_depth") == 0 and not stats.get("outbox_pending")
                       and time.monotonic() - still_since >= 2.0)
            if settled or time.monotonic() > deadline:
                return stats
            time.sleep(0.25)

    def terminate(self) -> tuple[Optional[int], float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: Optional[int] = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Sampler:
    """RSS (MB), threads and open files of one process, every ``every_s``, in a thread."""

    def __init__(self, pid: int, every_s: float) -> None:
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float, int, int]] = []  # (t, rss MB, threads, fds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            except OSError:
                return  # the process is gone
            rss, threads = re.search(r"VmRSS:\s+(\d+)", status), re.search(r"Threads:\s+(\d+)", status)
            if rss is None or threads is None:
                return  # a zombie: the process has exited
            self.samples.append((time.monotonic(), int(rss.group(1)) / 1024, int(threads.group(1)), fds))
            self._stop.wait(self.every_s)

    def growth(self, first: int) -> tuple[float, int, int]:
        """Median of the last 20% of samples minus median of the first 20%, from sample ``first``."""
        window = self.samples[first:]
        if len(window) < 2:
            return float("nan"), 0, 0
        edge = max(1, len(window) // 5)
        head, tail = np.array(window[:edge]), np.array(window[-edge:])
        delta = np.median(tail, axis=0) - np.median(head, axis=0)
        return float(delta[1]), int(round(delta[2])), int(round(delta[3]))

    def peak_rss(self) -> float:
        try:
            found = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{self.pid}/status").read_text())
        except OSError:
            return max((s[1] for s in self.samples), default=float("nan"))
        return int(found.group(1)) / 1024 if found else float("nan")


class Subscriber:
    """A persistent MQTT session (clean_session false, QoS 1): while the broker is down or this
    client reconnects, the broker keeps what arrives for it."""

    def __init__(self, port: int, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._results: set[tuple[str, int]] = set()
        self._result_times: list[float] = []  # arrival of each new distinct result
        self._states: dict[str, OrderedDict[tuple[str, str], dict]] = {}
        self._replies: dict[str, float] = {}
        self._reply_payloads: dict[str, dict[str, Any]] = {}  # command id -> its reply
        self._probe_ids = itertools.count()
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edgecam-reliability-subscriber",
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self._connected.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise SystemExit("the subscriber could not connect to the broker")

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if not flags.session_present:
            client.subscribe(f"{self.prefix}/#", qos=1)
        self._connected.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        parts = message.topic[len(self.prefix) + 1:].split("/")
        if parts == ["cmd"]:
            return  # our own commands, echoed
        try:
            payload = json.loads(message.payload)
        except (ValueError, RecursionError):
            return
        now = time.monotonic()
        with self._lock:
            if parts[-1] == "result" and isinstance(payload, dict):
                key = (message.topic, int(payload["seq"]))
                if key not in self._results:
                    self._results.add(key)
                    self._result_times.append(now)
            elif len(parts) == 3 and parts[-1] == "state" and isinstance(payload, dict):
                chain = self._states.setdefault("/".join(parts[:2]), OrderedDict())
                chain.setdefault((payload["label"], payload["since"]), payload)  # replays and repeats: once
            elif parts == ["cmd", "response"] and isinstance(payload, dict) and isinstance(payload.get("id"), str):
                self._replies[payload["id"]] = now
                self._reply_payloads[payload["id"]] = payload

    # -- results and states ---------------------------------------------------------------------

    def result_count(self) -> int:
        with self._lock:
            return len(self._results)

    def wait_results(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.result_count() < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def wait_result_after(self, since: float, timeout_s: float) -> float:
        """Arrival time of the first new result at or after ``since``; inf when none came."""
        deadline = since + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                later = [t for t in self._result_times[-500:] if t >= since]
            if later:
                return later[0]
            time.sleep(0.05)
        return float("inf")

    def rate(self, seconds: float) -> float:
        before, started = self.result_count(), time.monotonic()
        time.sleep(seconds)
        return (self.result_count() - before) / (time.monotonic() - started)

    def state_chain(self, region: str) -> tuple[int, int]:
        """(distinct changes received, breaks): a break is a change whose ``previous`` is not
        the label of the change received before it, i.e. a lost change."""
        with self._lock:
            states = list(self._states.get(region, {}).values())
        breaks = sum(1 for before, after in zip(states, states[1:]) if after.get("previous") != before["label"])
        breaks += bool(states) and states[0].get("previous") is not None
        return len(states), int(breaks)

    # -- commands -------------------------------------------------------------------------------

    def publish_command(self, payload: bytes, retain: bool) -> None:
        info = self.client.publish(f"{self.prefix}/cmd", payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(5)
        except (RuntimeError, ValueError):
            pass  # not connected: the probe that follows reports it

    def probe(self, timeout_s: float = 5.0) -> Optional[float]:
        """Send a status command with a fresh id; seconds until its reply, or None."""
        probe_id = f"probe-{next(self._probe_ids)}"
        started = time.monotonic()
        self.publish_command(json.dumps({"cmd": "status", "id": probe_id}).encode(), False)
        while time.monotonic() - started < timeout_s:
            with self._lock:
                if probe_id in self._replies:
                    return self._replies[probe_id] - started
            time.sleep(0.01)
        return None

    def command(self, payload: dict[str, Any], timeout_s: float = 60.0) -> Optional[dict[str, Any]]:
        """Send a command with a fresh id; its reply, or None when none came in time."""
        command_id = f"cmd-{next(self._probe_ids)}"
        self.publish_command(json.dumps({**payload, "id": command_id}).encode(), False)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if command_id in self._reply_payloads:
                    return self._reply_payloads[command_id]
            time.sleep(0.02)
        return None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
