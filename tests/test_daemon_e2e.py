"""`edgecam run` end to end, as a subprocess, on a generated video file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecam.bench.media import moving_frames, write_video
from tests.support.daemon_process import DaemonProcess, write_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.avi", moving_frames(90), fps=30)


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
    assert daemon.wait_exit(timeout=60) == 0
    assert any("UNTRAINED" in line for line in daemon.errors)


def test_missing_model_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "edgecam", "run", "--no-mqtt", "--model",
                           str(tmp_path / "nope.onnx")], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert "nope.onnx" in proc.stderr and "Traceback" not in proc.stderr


def test_non_looping_file_ends_the_run_cleanly(clip: Path, resnet_int8: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", mqtt={"enabled": False},
                          source={"uri": str(clip), "loop": False, "pace": False},
                          model={"path": str(resnet_int8), "threads": 1})
    daemon = DaemonProcess(["--config", str(config)], tmp_path)
    assert daemon.wait_exit(timeout=60) == 0, daemon.errors[-10:]
    assert any("source ended" in line for line in daemon.errors)
    seqs = [r["seq"] for r in daemon.results()]
    # Unpaced, inference keeps only the newest frames, but the last frame is never lost.
    assert seqs and seqs[-1] == 89, seqs[-5:]
