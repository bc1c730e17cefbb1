"""edgecam's runtime on a Raspberry Pi's CPU (arm64), under qemu-user emulation.

``test_arm64_check`` runs scripts/arm64-check.sh for real: a Debian arm64 root
with the runtime venv (cached under ~/.cache/edgecam/arm64, or
$EDGECAM_ARM64_CACHE), models built on the host, and a Mosquitto broker on the
host. It is slow (~6-8 min cold, ~2 min warm) and needs root, so it carries the
``arm64`` marker: run it with ``pytest -m arm64``, leave it out with
``-m 'not arm64'``. When it is selected but cannot run (not root, no
debootstrap/qemu and no apt-get), it FAILS with the reason: it never skips.

The shellcheck (script + scripts/arm64/checks.sh), usage and import tests are fast and always run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "arm64-check.sh"
HELPERS = REPO / "scripts" / "arm64"


def _cache_dir() -> str:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecam" / "arm64"
    return os.environ.get("EDGECAM_ARM64_CACHE") or str(default)


def _run_check(*args: str) -> str:
    if os.geteuid() != 0:
        pytest.fail("the arm64 check needs root (debootstrap, chroot, mount, binfmt_misc): run pytest as "
                    "root, or leave it out with -m 'not arm64'", pytrace=False)
    if not (shutil.which("debootstrap") or shutil.which("apt-get")):
        pytest.fail("neither debootstrap nor apt-get is available: install debootstrap and "
                    "qemu-user-static, or leave this test out with -m 'not arm64'", pytrace=False)
    command = ["bash", str(SCRIPT), "--cache", _cache_dir(), *args]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=2400,
                            stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"arm64-check.sh exited {result.returncode}:\n{output[-6000:]}"
    return result.stdout


def _assert_report(report: str) -> None:
    assert "RESULT: PASS" in report, report
    assert re.search(r"^root: uname -m aarch64,", report, re.MULTILINE), report
    # 1. Same Top-3 labels for every photo; a swap only between labels the host scores as tied.
    classify = re.findall(r"^classify top-3 (\S+ \S+): host (\[.*?\]) \| arm64 (\[.*?\]) -> (\S+)", report, re.MULTILINE)
    assert len(classify) >= 6, report
    for image, host, arm, verdict in classify:
        assert verdict in ("same", "near-tie"), f"{image}: host {host} vs arm64 {arm}"
        assert verdict != "same" or host == arm
    assert sum(verdict == "same" for *_, verdict in classify) >= len(classify) // 2, report
    crops = re.search(r"^preprocess crops \((\d+) photos.*: (bit-identical|max (\d+) LSB)", report, re.MULTILINE)
    assert crops and int(crops.group(1)) >= 3 and int(crops.group(3) or 0) <= 1, report
    # 2. Raw outputs: FP32 to 1e-4, INT8 within 2 quantization steps, top-1 identical.
    fp32 = re.findall(r"^fp32 \S+: max abs diff (\S+) .*top-1 same (\d+)/(\d+)", report, re.MULTILINE)
    int8 = re.findall(r"^int8 \S+: max abs diff \S+ = (\S+) quantization steps.*top-1 same (\d+)/(\d+)",
                      report, re.MULTILINE)
    assert fp32 and int8, report
    for diff, same, total in fp32:
        assert float(diff) < 1e-4 and same == total and int(total) >= 3, report
    for steps, same, total in int8:
        assert float(steps) <= 2.0 and same == total and int(total) >= 3, report
    # 3. The daemon published results over MQTT and stopped with exit 0 on SIGTERM.
    run = re.search(r"^run: (\d+) results? on MQTT .* SIGTERM -> exit (\d+)$", report, re.MULTILINE)
    assert run, report
    assert int(run.group(1)) >= 3 and run.group(2) == "0", report


@pytest.mark.arm64
@pytest.mark.timeout(2700)
def test_arm64_check_pi4_agrees_with_host() -> None:
    report = _run_check()
    assert "Raspberry Pi 4 (QEMU_CPU=cortex-a72)" in report
    assert "CPU part 0xd08 x4" in report
    _assert_report(report)


@pytest.mark.arm64
@pytest.mark.timeout(2700)
def test_arm64_check_pi5_agrees_with_host() -> None:
    report = _run_check("--pi5")
    assert "Raspberry Pi 5 (QEMU_CPU=cortex-a76)" in report
    assert "CPU part 0xd0b x4" in report
    _assert_report(report)


def test_arm64_script_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck not found: apt-get install -y shellcheck", pytrace=False)
    result = subprocess.run([shellcheck, "-x", str(SCRIPT)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_arm64_script_usage_and_bad_argument(tmp_path: Path) -> None:
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], check=False, capture_output=True, text=True,
                           timeout=30)
    assert usage.returncode == 0 and "--pi5" in usage.stdout and "--cache DIR" in usage.stdout
    bad = subprocess.run(["bash", str(SCRIPT), "--cache", str(tmp_path), "--bogus"], check=False, capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode != 0
    assert "unknown argument: --bogus" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_arm64_helpers_only_import_the_runtime() -> None:
    """dump_outputs.py runs inside the root, whose venv has only the runtime requirements."""
    source = (HELPERS / "dump_outputs.py").read_text()
    imported = set(re.findall(r"^\s*(?:import|from) (\w+)", source, re.MULTILINE))
    allowed = {"__future__", "argparse", "json", "platform", "statistics", "sys", "time", "pathlib",
               "numpy", "onnxruntime", "cv2", "pydantic", "edgecam"}
    assert imported <= allowed, imported - allowed
