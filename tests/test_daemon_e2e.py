"""`edgecam run` end to end, as a subprocess, on a generated video file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.media import moving_frames, write_video

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.avi", moving_frames(90), fps=30)


class DaemonProcess:
    """`edgecam run` in a subprocess, with stdout lines and stderr collected by threads."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "edgecam", "run", *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(s, out), daemon=True)
                         for s, out in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))]
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

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


def test_run_on_video_file_prints_consistent_results_and_stops_on_sigterm(
        clip: Path, resnet_int8: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", device_id="e2e", mqtt={"enabled": False},
                          source={"uri": str(clip), "loop": True, "pace": True},
                          model={"path": str(resnet_int8), "threads": 1}, stats={"interval_s": 1})
    daemon = DaemonProcess(["--config", str(config)], tmp_path)
    try:
        assert daemon.wait_for(lambda: len(daemon.results()) >= 40, timeout=60), daemon.errors[-20:]
        code, elapsed = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0, daemon.errors[-20:]
    assert elapsed < 1.0, f"SIGTERM took {elapsed:.2f} s"

    results = daemon.results()
    seqs = [r["seq"] for r in results]
    assert all(b > a for a, b in zip(seqs, seqs[1:])), seqs
    for r in results:
        assert r["device"] == "e2e"
        assert len(r["top"]) == 3
        scores = [t["score"] for t in r["top"]]
        assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1
        lat = r["latency_ms"]
        assert min(lat["wait"], lat["inference"], lat["publish"]) >= 0
        assert abs(lat["total"] - (lat["wait"] + lat["inference"] + lat["publish"])) < 0.01
        assert r["frame"] == {"width": 320, "height": 240}
        assert r["model"]["precision"] == "int8" and r["model"]["input_size"] == 160
        assert r["captured_at"].endswith("Z")
    # Paced at 30 fps, a 90-frame loop lasts 3 s: the daemon saw the file loop.
    assert any("stats:" in line for line in daemon.errors), "no stats log line"
    assert any("stopped" in line for line in daemon.errors)


def test_source_lost_and_back_resumes(clip: Path, resnet_int8: Path, tmp_path: Path) -> None:
    moving = tmp_path / "moving.avi"
    shutil.copy(clip, moving)
    config = write_config(tmp_path / "config.yaml", device_id="lost", mqtt={"enabled": False},
                          source={"uri": str(moving), "loop": False, "pace": True,
                                  "backoff": {"initial_s": 0.2, "max_s": 0.5}},
                          model={"path": str(resnet_int8), "threads": 1})
    daemon = DaemonProcess(["--config", str(config)], tmp_path)
    try:
        assert daemon.wait_for(lambda: len(daemon.results()) >= 5, timeout=60), daemon.errors[-20:]
        moving.rename(tmp_path / "away.avi")
        # Without loop the file ends after 3 s; reopening fails while it is away.
        assert daemon.wait_for(lambda: any("lost" in line.lower() for line in daemon.errors), timeout=15), \
            daemon.errors[-20:]
        count_while_away = len(daemon.results())
        time.sleep(1.0)
        assert daemon.proc.poll() is None, "daemon died while its source was away"
        (tmp_path / "away.avi").rename(moving)
        assert daemon.wait_for(lambda: len(daemon.results()) >= count_while_away + 5, timeout=30), \
            daemon.errors[-20:]
        code, _ = daemon.terminate()
    finally:
        daemon.kill()
    assert code == 0
    seqs = [r["seq"] for r in daemon.results()]
    assert all(b > a for a, b in zip(seqs, seqs[1:]))


def test_untrained_model_warns_loudly(clip: Path, resnet_int8: Path, tmp_path: Path) -> None:
    daemon = DaemonProcess(["--no-mqtt", "--source", str(clip), "--model", str(resnet_int8),
                            "--duration", "1.5"], tmp_path)
    code = daemon.proc.wait(timeout=60)
    daemon.terminate() if daemon.proc.poll() is None else None
    for thread in daemon._threads:
        thread.join(timeout=2)
    assert code == 0
    assert any("UNTRAINED" in line for line in daemon.errors)


def test_missing_model_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "edgecam", "run", "--no-mqtt", "--model",
                           str(tmp_path / "nope.onnx")], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert "nope.onnx" in proc.stderr and "Traceback" not in proc.stderr
