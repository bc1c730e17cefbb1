"""The real daemon (a subprocess, real model, real video, real Mosquitto) and its outbox:
state changes made while the broker is down survive ``kill -9`` and arrive, exactly
those, in order, with their original times, before the new ones; and a read-only state
directory is one clear error while results and state changes still flow."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecam.bench.media import photo_bgr, write_video
from tests.support.daemon_process import DaemonProcess, write_config
from tests.support.mqtt import Broker, Collector

DEVICE = "door-cam"
PREFIX = f"edgecam/{DEVICE}"
STATE_TOPIC = f"{PREFIX}/desk/table/state"
SCENES = 5  # cat, cup, cat, cup, cat: five debounced states (the first from none)
STATE_LINE = re.compile(r"state: desk/table (.+) -> (.+) \([0-9.]+\) since (\S+)$")


def scenes_video(folder: Path) -> Path:
    """1 s scenes alternating between two photos, then 15 s of the last one (no change there),
    at 10 fps with a little sensor noise."""
    rng = np.random.default_rng(3)
    cat, cup = photo_bgr("chelsea", (320, 240)), photo_bgr("coffee", (320, 240))
    frames = []
    for index in range(SCENES):
        frames += [cat if index % 2 == 0 else cup] * 10
    frames += [cat] * 150
    noisy = [np.clip(f.astype(np.int16) + rng.integers(-3, 4, f.shape), 0, 255).astype(np.uint8) for f in frames]
    return write_video(folder / "scenes.avi", noisy, fps=10)


def daemon_config(tmp_path: Path, broker: Broker, effnet: Path, video: Path) -> Path:
    return write_config(
        tmp_path / "config.yaml", device_id=DEVICE, stats={"interval_s": 0.5},
        model={"path": str(effnet), "threads": 1},
        cameras={"desk": {"uri": str(video), "loop": False, "regions": {"table": {"confirm": 2}}}},
        mqtt={"host": broker.host, "port": broker.port, "keepalive_s": 5,
              "reconnect": {"initial_s": 0.3, "max_s": 1.0}})


def logged_states(daemon: DaemonProcess) -> list[tuple[str, str, str]]:
    """(previous, label, since) of every "state:" line the daemon logged."""
    found = []
    for line in list(daemon.errors):
        match = STATE_LINE.search(line)
        if match:
            found.append(match.groups())
    return found


def test_changes_made_offline_survive_kill_9_and_arrive_in_order_then_new_ones(tmp_path: Path, effnet_models):
    broker = Broker(tmp_path / "broker")  # its port is ours; nothing listens there yet
    config = daemon_config(tmp_path, broker, effnet_models.int8, scenes_video(tmp_path))
    first = DaemonProcess(["--config", str(config)], tmp_path)
    try:
        assert first.wait_for(lambda: len(logged_states(first)) >= SCENES, timeout=120), first.errors[-20:]
        # The stats line counts what waits in the outbox: all of them, on disk, before the kill.
        assert first.wait_for(lambda: any(f"outbox {SCENES} waiting" in line and "in memory" not in line
                                          for line in list(first.errors)), timeout=30), first.errors[-5:]
        assert first.proc.poll() is None, "the daemon must still be running when it is killed"
    finally:
        first.kill()  # SIGKILL: no shutdown code runs
    offline = logged_states(first)
    assert len(offline) == SCENES and offline[0][0] == "None"
    assert [label for _, label, _ in offline[::2]] == [offline[0][1]] * 3  # cat, (cup), cat, (cup), cat

    broker.start()
    try:
        collector = Collector(broker, [f"{PREFIX}/+/+/state", f"{PREFIX}/status"])
        second = DaemonProcess(["--config", str(config)], tmp_path)
        try:
            collector.wait_for(STATE_TOPIC, 2 * SCENES, timeout=120)
            assert second.wait_exit(timeout=60) == 0  # the video ends: a clean stop
        finally:
            second.kill()
        payloads = [m.json() for m in collector.messages(STATE_TOPIC)]
        # Exactly the offline changes, in order, with the times they happened...
        assert [(str(p["previous"]), p["label"], p["since"]) for p in payloads[:SCENES]] == offline
        # ...then the last of them again: the second run starts from it (same since)...
        restored = payloads[SCENES]
        assert (str(restored["previous"]), restored["label"], restored["since"]) == offline[-1]
        assert any("kept from before the restart" in line for line in list(second.errors))
        # ...then the second run's own, which go on from it, later.
        online = logged_states(second)
        assert [(str(p["previous"]), p["label"], p["since"]) for p in payloads[SCENES + 1:]] == online
        assert online[0][0] == offline[-1][1] and online[0][2] > offline[-1][2]
        assert len(online) == SCENES - 1  # its first scene is the restored state: no change
        assert len(payloads) == 2 * SCENES  # nothing twice
        late = Collector(broker, [STATE_TOPIC])
        try:
            assert late.wait_for(STATE_TOPIC, 1)[0].json() == payloads[-1]  # retained: the newest
        finally:
            late.close()
        collector.close()
    finally:
        broker.stop()
    assert not any("wait in the outbox" in line for line in second.errors)  # delivered before the stop


def read_only_launcher(directory: Path) -> list[str]:
    """``python -m edgecam`` with ``directory`` read-only: a read-only bind mount in a private
    mount namespace for root (root ignores file modes), file modes otherwise."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return [sys.executable, "-m", "edgecam"]
    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed to make a read-only directory as root", pytrace=False)
    script = 'd="$1"; shift; mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" "$d" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(directory),
            sys.executable, "-m", "edgecam"]


def test_read_only_state_directory_is_one_clear_error_and_everything_still_flows(
        tmp_path: Path, broker, effnet_models):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    config = daemon_config(tmp_path, broker, effnet_models.int8, scenes_video(tmp_path))
    collector = Collector(broker, [f"{PREFIX}/+/+/state", f"{PREFIX}/+/+/result"])
    daemon = DaemonProcess(["--config", str(config)], tmp_path, launcher=read_only_launcher(state_dir),
                           env={"STATE_DIRECTORY": str(state_dir)})
    try:
        collector.wait_for(STATE_TOPIC, SCENES, timeout=120)
        collector.wait_for(f"{PREFIX}/desk/table/result", 20, timeout=30)
        assert daemon.wait_exit(timeout=60) == 0
    finally:
        daemon.kill()
        collector.close()
    errors = [line for line in daemon.errors if "ERROR" in line]
    assert len(errors) == 1, errors
    assert f"MQTT outbox {state_dir / f'outbox-{DEVICE}.sqlite3'}: cannot open it" in errors[0]
    assert "Read-only file system" in errors[0] or "Permission denied" in errors[0]
    assert "State changes now wait in memory only" in errors[0]
    assert [m.json()["since"] for m in collector.messages(STATE_TOPIC)] == \
        [since for _, _, since in logged_states(daemon)]
    assert list(state_dir.iterdir()) == []


def test_a_corrupted_outbox_row_is_set_aside_and_the_daemon_delivers_the_rest(tmp_path: Path, broker, effnet_models):
    """One flipped bit in one row (a BLOB turned TEXT; integrity_check says ok) made `edgecam run`
    crash at start, every time. Now that row is set aside and the others are delivered."""
    from edgecam.publish.mqtt.outbox import Outbox
    from tests.test_outbox_keeps_states import flip_payload_type

    state_dir = tmp_path / "state"
    path = state_dir / f"outbox-{DEVICE}.sqlite3"
    box = Outbox(path, 8_000_000).open()
    old = [box.append(STATE_TOPIC, b'{"label":"earlier-%d"}' % i, True, "desk", "table") for i in range(3)]
    box.close()
    flip_payload_type(path, old[1].payload, STATE_TOPIC, "desk", "table")
    config = daemon_config(tmp_path, broker, effnet_models.int8, scenes_video(tmp_path))
    collector = Collector(broker, [STATE_TOPIC])
    daemon = DaemonProcess(["--config", str(config)], tmp_path, env={"STATE_DIRECTORY": str(state_dir)})
    try:
        collector.wait_for(STATE_TOPIC, 2 + SCENES, timeout=120)
        assert daemon.wait_exit(timeout=60) == 0
    finally:
        daemon.kill()
        collector.close()
    payloads = [m.payload for m in collector.messages(STATE_TOPIC)]
    assert payloads[:2] == [old[0].payload, old[2].payload]  # first, in order; the bad one set aside
    assert len(payloads) == 2 + len(logged_states(daemon))
    warnings = [line for line in daemon.errors if "could not be read" in line]
    assert len(warnings) == 1 and f"id {old[1].id}: payload is text" in warnings[0], daemon.errors[-20:]
    assert not [line for line in daemon.errors if "Traceback" in line or "ERROR" in line]
