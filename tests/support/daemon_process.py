"""`edgecam run` in a subprocess, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import yaml


class DaemonProcess:
    """`edgecam run` in a subprocess, with stdout lines and stderr collected by threads.

    ``launcher`` replaces ``python -m edgecam`` (e.g. a script that wedges the model
    first); ``read_stdout=False`` leaves stdout a pipe nobody reads."""

    def __init__(self, args: list[str], cwd: Path, *, launcher: Optional[list[str]] = None,
                 read_stdout: bool = True, env: Optional[dict[str, str]] = None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        command = launcher or [sys.executable, "-m", "edgecam"]
        self.proc = subprocess.Popen([*command, "run", *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.errors: list[str] = []
        streams = [(self.proc.stderr, self.errors)]
        if read_stdout:
            streams.append((self.proc.stdout, self.lines))
        self._threads = [threading.Thread(target=self._pump, args=(s, out), daemon=True) for s, out in streams]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream, out: list[str]) -> None:
        for line in stream:
            out.append(line.rstrip("\n"))

    def results(self) -> list[dict]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.proc.poll() is not None:
                return predicate()
            time.sleep(0.05)
        return False

    def terminate(self) -> tuple[int, float]:
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=10)
        elapsed = time.monotonic() - start
        for thread in self._threads:
            thread.join(timeout=2)
        return code, elapsed

    def wait_exit(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=2)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path
