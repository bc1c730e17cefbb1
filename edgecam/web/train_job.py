"""Training from the web app: ``edgecam train`` as a child process, one at a time.

The child runs at a lower CPU priority (``os.nice``) and under an address-space limit
(``RLIMIT_AS``), both set by a small trampoline before it becomes ``python -m edgecam
train`` (no preexec_fn: the daemon has threads), so the daemon keeps its cameras while
it trains. It writes its progress as JSON lines on stdout (``--progress-json -``), which
a reader thread keeps for the page to poll; its report comes on stderr and in the report
file. Cancel sends SIGTERM: the child stops at once and writes nothing. The web app never
imports the training code (tests/test_layering.py).

The model is named ``<camera>_<region>`` and written next to the daemon's model; the
child refuses to replace a model another region trained unless ``force``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

NICE = 10
MEMORY_MB = 1536  # address space, not RSS: onnxruntime and numpy reserve more than they touch
THREADS = 1
EVENTS_KEPT = 400
STDERR_KEPT = 200
_TRAMPOLINE = ("import os, resource, sys; os.nice(int(sys.argv[1])); limit = int(sys.argv[2]) * 2**20; "
               "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); os.execv(sys.argv[3], sys.argv[3:])")


def model_name(camera: str, region: str) -> str:
    """``<camera>_<region>``, as ``edgecam train`` names a region folder's model."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{camera}_{region}").strip("._-") or "custom"


class TrainJob:
    """One run of ``edgecam train`` and what it said so far."""

    def __init__(self, camera: str, region: str, command: list[str], env: dict[str, str],
                 memory_mb: int = MEMORY_MB) -> None:
        self.camera, self.region = camera, region
        self.name = model_name(camera, region)
        self.started = time.time()
        self.finished: Optional[float] = None
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.stderr: deque[str] = deque(maxlen=STDERR_KEPT)
        self.done: Optional[dict[str, Any]] = None
        self.dataset: Optional[dict[str, Any]] = None
        self.error = ""
        self.cancelled = False
        self.returncode: Optional[int] = None
        self.memory_mb = memory_mb
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self._readers = [threading.Thread(target=self._read_events, daemon=True, name="train-events"),
                         threading.Thread(target=self._read_stderr, daemon=True, name="train-stderr")]
        for reader in self._readers:
            reader.start()
        threading.Thread(target=self._wait, daemon=True, name="train-wait").start()

    @property
    def running(self) -> bool:
        return self.returncode is None

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            with self._lock:
                self.events.append(event)
                kind = event.get("event")
                if kind == "done":
                    self.done = event
                elif kind == "dataset":
                    self.dataset = event
                elif kind == "error":
                    self.error = str(event.get("message", ""))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.stderr.append(line.rstrip("\n"))

    def _wait(self) -> None:
        code = self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        with self._lock:
            self.finished = time.time()
            if code != 0 and not self.cancelled and not self.error:
                tail = [line for line in self.stderr if line.strip()]
                self.error = tail[-1] if tail else f"edgecam train ended with exit status {code}"
                if "bad_alloc" in self.error or "MemoryError" in self.error:
                    self.error = (f"out of memory under the training limit ({self.memory_mb} MB of address "
                                  f"space): {self.error}")
            self.returncode = code
        log.info("train: %s/%s ended (%s)", self.camera, self.region, self.state)

    def cancel(self) -> None:
        if self.running:
            self.cancelled = True
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    @property
    def state(self) -> str:
        if self.returncode is None:
            return "running"
        if self.cancelled:
            return "cancelled"
        return "done" if self.returncode == 0 and self.done is not None else "failed"

    def payload(self) -> dict[str, Any]:
        with self._lock:
            events = list(self.events)
            phase = next((e.get("phase") for e in reversed(events) if e.get("event") == "phase"), None)
            progress = next((e for e in reversed(events) if e.get("event") in ("progress", "epoch")), None)
            epochs = [e for e in events if e.get("event") in ("epoch", "stopped_early")][-50:]
            reply: dict[str, Any] = {
                "camera": self.camera, "region": self.region, "name": self.name, "state": self.state,
                "pid": self.proc.pid, "started": self.started, "finished": self.finished,
                "seconds": round((self.finished or time.time()) - self.started, 1), "phase": phase,
                "progress": progress, "epochs": epochs, "dataset": self.dataset, "error": self.error,
                "log": list(self.stderr)[-20:]}
            done = self.done
        if done is not None and self.state == "done":
            reply["done"] = done
            try:
                reply["report"] = Path(str(done.get("report"))).read_text(encoding="utf-8")
            except OSError:
                reply["report"] = ""
        return reply


class Trainer:
    """At most one training run at a time (a Pi has the CPU and memory for one)."""

    def __init__(self, python: str = sys.executable, nice: int = NICE, memory_mb: int = MEMORY_MB,
                 threads: int = THREADS) -> None:
        self.python, self.nice, self.memory_mb, self.threads = python, nice, memory_mb, threads
        self.job: Optional[TrainJob] = None
        self._lock = threading.Lock()

    def start(self, camera: str, region: str, files: dict[str, Any], force: bool = False) -> TrainJob:
        """``files``: the region's DaemonControl.region_files. Raises RuntimeError while one runs."""
        with self._lock:
            if self.job is not None and self.job.running:
                raise RuntimeError(f"training {self.job.camera}/{self.job.region} is still running: "
                                   "wait for it or cancel it")
            name = model_name(camera, region)
            train = [self.python, "-m", "edgecam", "train", files["dataset"], "--out", files["models"],
                     "--name", name, "--backbone", files["backbone"], "--threads", str(self.threads),
                     "--progress-json", "-", *(["--force"] if force else [])]
            command = [self.python, "-c", _TRAMPOLINE, str(self.nice), str(self.memory_mb), *train]
            threads = str(self.threads)
            env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
                   "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
            self.job = TrainJob(camera, region, command, env, self.memory_mb)
            log.info("train: %s/%s started (pid %d, nice %d, %d MB address space)", camera, region,
                     self.job.proc.pid, self.nice, self.memory_mb)
            return self.job

    def current(self, camera: str, region: str) -> Optional[TrainJob]:
        job = self.job
        return job if job is not None and (job.camera, job.region) == (camera, region) else None

    def stop(self) -> None:
        """The daemon stops: a run still going is cancelled."""
        if self.job is not None:
            self.job.cancel()
