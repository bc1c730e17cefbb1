"""scripts/install-pi.sh: a --dry-run that prints the Pi install plan (shellcheck:
tests/test_shell_scripts.py) while changing nothing (checked with EDGECAM_ROOT pointing at a
temporary root). This machine is not a Pi, which the script must say."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgecam.config import load_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install-pi.sh"


def _run(*args: str, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("EDGECAM_ROOT", None)
    if root is not None:
        env["EDGECAM_ROOT"] = str(root)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def _snapshot(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in sorted(root.rglob("*"))}


def _apt_installed(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return "install ok installed" in proc.stdout


def _commands(stdout: str) -> list[str]:
    return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    proc = _run("--dry-run", "--with-mosquitto", root=root)
    assert proc.returncode == 0, proc.stderr
    commands = _commands(proc.stdout)
    joined = "\n".join(commands)
    assert "not a Raspberry Pi" in proc.stderr and "nothing was changed" in proc.stderr
    if subprocess.run(["id", "-u", "edgecam"], capture_output=True).returncode != 0:
        assert any(c.startswith("useradd ") and "--groups video" in c and c.endswith(" edgecam") for c in commands)
    apt = [c for c in commands if "apt-get install" in c]
    wanted = ["python3-venv", "python3-pip", "python3-picamera2", "mosquitto", "mosquitto-clients"]
    missing = [pkg for pkg in wanted if not _apt_installed(pkg)]
    assert "python3-picamera2" in missing  # a Raspberry Pi OS package: never on this machine
    assert len(apt) == 1 and apt[0].split("--no-install-recommends ")[1].split() == missing
    assert f"python3 -m venv --system-site-packages {root}/opt/edgecam/venv" in joined
    assert f"{root}/opt/edgecam/venv/bin/pip install" in joined and "numpy\\<2" in joined
    assert f"{root}/etc/systemd/system/edgecam.service" in joined
    assert "systemctl enable edgecam" in commands and "systemctl restart edgecam" in commands
    assert "systemctl enable --now mosquitto" in commands
    assert f"{root}/etc/edgecam/config.yaml" in joined and f"{root}/etc/edgecam/edgecam.env" in joined
    assert _snapshot(root) == {}  # nothing created under the alternative root
    assert not Path("/opt/edgecam").exists() and not Path("/etc/systemd/system/edgecam.service").exists()


def test_dry_run_is_idempotent_for_what_is_already_installed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "opt/edgecam").mkdir(parents=True)
    # The checkout's own venv stands in for the installed one: same version -> no pip step.
    (root / "opt/edgecam/venv").symlink_to(Path(sys.executable).parents[1])
    shutil.copy(REPO / "README.md", root / "opt/edgecam/README.md")
    for sub in ("etc/edgecam", "etc/systemd/system", "var/lib/edgecam/models"):
        (root / sub).mkdir(parents=True)
    (root / "etc/edgecam/config.yaml").write_text("log_level: DEBUG\n")
    (root / "etc/edgecam/edgecam.env").write_text("")
    shutil.copy(REPO / "systemd/edgecam.service", root / "etc/systemd/system/edgecam.service")
    (root / "var/lib/edgecam/models/resnet18_160_int8.onnx").write_bytes(b"model")
    before = _snapshot(root)
    proc = _run("--dry-run", root=root)
    assert proc.returncode == 0, proc.stderr
    joined = "\n".join(_commands(proc.stdout))
    for already_done in ("venv", "pip install", "install -d", "install -m", "sed -i", "daemon-reload"):
        assert already_done not in joined, (already_done, joined)
    assert "keeping existing /etc/edgecam/config.yaml" in proc.stderr
    assert "already installed" in proc.stderr and "unit /etc/systemd/system/edgecam.service up to date" in proc.stderr
    assert _snapshot(root) == before


def test_dry_run_uninstall_lists_removals_and_keeps_everything(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for sub in ("opt/edgecam/venv/bin", "etc/edgecam", "etc/systemd/system", "var/lib/edgecam/models",
                "var/cache/edgecam"):
        (root / sub).mkdir(parents=True)
    (root / "etc/edgecam/config.yaml").write_text("log_level: INFO\n")
    shutil.copy(REPO / "systemd/edgecam.service", root / "etc/systemd/system/edgecam.service")
    before = _snapshot(root)

    proc = _run("--dry-run", "--uninstall", root=root)
    assert proc.returncode == 0, proc.stderr
    commands = _commands(proc.stdout)
    assert f"rm -f {root}/etc/systemd/system/edgecam.service" in commands
    assert f"rm -rf {root}/opt/edgecam" in commands and f"rm -rf {root}/var/cache/edgecam" in commands
    assert not any("/etc/edgecam" in c and c.startswith("rm ") for c in commands)  # config kept
    assert "kept /etc/edgecam" in proc.stderr

    proc = _run("--dry-run", "--uninstall", "--purge", root=root)
    assert proc.returncode == 0, proc.stderr
    commands = _commands(proc.stdout)
    assert f"rm -rf {root}/etc/edgecam" in commands and f"rm -rf {root}/var/lib/edgecam" in commands
    assert _snapshot(root) == before


def test_installed_config_is_valid_and_points_at_the_pi_camera_and_model(tmp_path: Path) -> None:
    proc = _run("--print-config")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "config.yaml"
    path.write_text(proc.stdout)
    config = load_config(path)
    assert config.source.uri == "picamera2"
    assert config.model.path == "/var/lib/edgecam/models/resnet18_160_int8.onnx"
    model = tmp_path / "my_model.onnx"
    model.write_bytes(b"x")
    proc = _run("--print-config", "--model", str(model))
    assert "  path: /var/lib/edgecam/models/my_model.onnx" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown option: --bogus"),
    (["--purge"], "--purge only goes with --uninstall"),
    (["--model", "/nonexistent.onnx"], "--model /nonexistent.onnx: no such file"),
    (["--model", "x.onnx", "--build-model"], "not both"),
])
def test_bad_options_fail_with_a_clear_message(args: list[str], message: str) -> None:
    proc = _run(*args)
    assert proc.returncode != 0 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_real_install_refuses_on_a_non_pi(tmp_path: Path) -> None:
    proc = _run(root=tmp_path)
    assert proc.returncode == 1 and "not a Raspberry Pi" in proc.stderr
    assert _snapshot(tmp_path) == {}
