"""One daemon per device id: a second `edgecam run` with the same id refuses to start, naming
the first one's PID (two knocked each other off the broker with the same client id)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from edgecam.errors import ConfigError
from edgecam.service.instance_lock import InstanceLock, lock_path
from tests.support.daemon_process import DaemonProcess


def run_args(model: Path, device: str) -> list[str]:
    return ["--no-mqtt", "--source", "demo", "--model", str(model), "--device-id", device]


def test_a_second_daemon_with_the_same_device_id_refuses_to_start(tmp_path: Path, resnet_int8: Path) -> None:
    state = tmp_path / "state"
    env = {"STATE_DIRECTORY": str(state)}
    first = DaemonProcess(run_args(resnet_int8, "garage"), tmp_path, env=env)
    others: list[DaemonProcess] = []
    try:
        assert first.wait_for(lambda: len(first.results()) >= 3, timeout=60), first.errors[-10:]
        second = DaemonProcess(run_args(resnet_int8, "garage"), tmp_path, env=env)
        others.append(second)
        assert second.wait_exit(timeout=60) == 2
        message = "\n".join(second.errors)
        assert f"another edgecam (PID {first.proc.pid}) already runs with device id 'garage'" in message
        assert "Traceback" not in message and second.results() == []
        assert first.proc.poll() is None  # the first one goes on
        third = DaemonProcess(run_args(resnet_int8, "porch"), tmp_path, env=env)  # another id: fine
        others.append(third)
        assert third.wait_for(lambda: len(third.results()) >= 3, timeout=60), third.errors[-10:]
        assert first.terminate()[0] == 0 and third.terminate()[0] == 0
    finally:
        for daemon in (first, *others):
            daemon.kill()
    # The first one stopped: the id is free again (the file stays; the kernel released the lock).
    again = DaemonProcess([*run_args(resnet_int8, "garage"), "--duration", "2"], tmp_path, env=env)
    try:
        assert again.wait_exit(timeout=60) == 0, again.errors[-10:]
    finally:
        again.kill()
    assert sorted(p.name for p in state.iterdir()) == ["edgecam-garage.lock", "edgecam-porch.lock"]


def test_a_killed_daemon_leaves_no_stale_lock(tmp_path: Path) -> None:
    held = InstanceLock("cam", tmp_path).acquire()
    assert held.held and lock_path("cam", tmp_path).read_text() == f"{os.getpid()}\n"
    with pytest.raises(ConfigError, match=rf"another edgecam \(PID {os.getpid()}\) already runs with device id 'cam'"):
        InstanceLock("cam", tmp_path).acquire()  # (flock conflicts between two opens in one process too)
    held.release()
    assert InstanceLock("cam", tmp_path).acquire().held


def test_odd_device_ids_get_a_safe_file_name(tmp_path: Path) -> None:
    for device in ("..", "a\\nb", "cam:1", "ü" * 3, "x" * 300):
        path = lock_path(device, tmp_path)
        assert path.parent == tmp_path and path.name.startswith("edgecam-") and len(path.name) < 60
    assert lock_path("garage-1", tmp_path).name == "edgecam-garage-1.lock"


def test_a_directory_that_cannot_hold_the_lock_is_a_warning_not_a_refusal(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam")
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    lock = InstanceLock("cam", blocker).acquire()
    assert not lock.held
    assert [r.getMessage() for r in caplog.records if "cannot take the lock" in r.getMessage()]
