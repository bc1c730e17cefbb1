"""edgecam's runtime on a Raspberry Pi's CPU (arm64), under qemu-user emulation.

``test_arm64_check`` runs scripts/arm64-check.sh for real: a Debian arm64 root
with the runtime venv (cached under ~/.cache/edgecam/arm64, or
$EDGECAM_ARM64_CACHE), models built on the host, and a Mosquitto broker on the
host. It is slow (~13 min cold on a 2-core VM, 70-80 s warm) and needs root, so it carries the
``arm64`` marker: run it with ``pytest -m arm64``, leave it out with
``-m 'not arm64'``. When it is selected but cannot run (not root, no
debootstrap/qemu and no apt-get), it FAILS with the reason: it never skips.

``test_arm64_check_fails_on_an_injected_fault`` reruns only the raw-output step
(cached root) with the arm side's preprocessing broken on purpose (--fault mean)
and requires the check to fail: the limits must stay strict enough to catch it.

The shellcheck (script + scripts/arm64/checks.sh), usage, import and the
comparison/tolerance tests (natively, on a real INT8 model) are fast and always run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "arm64-check.sh"
HELPERS = REPO / "edgecam" / "bench" / "arm64"


def _cache_dir() -> str:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecam" / "arm64"
    return os.environ.get("EDGECAM_ARM64_CACHE") or str(default)


def _run_check(*args: str, expect_rc: int = 0) -> str:
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
    assert result.returncode == expect_rc, f"arm64-check.sh exited {result.returncode}:\n{output[-6000:]}"
    return result.stdout


def _assert_report(report: str) -> None:
    assert "RESULT: PASS" in report, report
    assert re.search(r"^root: uname -m aarch64,", report, re.MULTILINE), report
    # 1. Same Top-3 labels for every photo; a swap only between labels the host scores as tied.
    classify = re.findall(r"^classify top-3 (\S+ \S+): host (\[.*?\]) \| arm64 (\[.*?\]) -> (\S+)", report,
                          re.MULTILINE)
    assert len(classify) >= 6, report
    for image, host, arm, verdict in classify:
        assert verdict in ("same", "near-tie"), f"{image}: host {host} vs arm64 {arm}"
        assert verdict != "same" or host == arm
    assert sum(verdict == "same" for *_, verdict in classify) >= len(classify) // 2, report
    crops = re.search(r"^preprocess crops \((\d+) photos.*: (bit-identical|max (\d+) LSB)", report, re.MULTILINE)
    assert crops and int(crops.group(1)) >= 3 and int(crops.group(3) or 0) <= 1, report
    tensors = re.search(r"^preprocess tensors \((\d+) model/photo pairs.*: (\S+) \(limit", report, re.MULTILINE)
    assert tensors and int(tensors.group(1)) >= 8 and tensors.group(2) == "bit-identical", report
    # 2. Raw outputs: FP32 to 1e-4; INT8 within twice the host's own rounding spread
    #    (tolerance.py), top-1 wherever the host's margin exceeds twice that limit.
    limits = _int8_limits(report)
    fp32 = re.findall(r"^fp32 \S+: max abs diff (\S+) \(limit \S+\); top-1 same (\d+)/(\d+) where", report,
                      re.MULTILINE)
    int8 = re.findall(r"^int8 (\S+): max abs diff \S+ = (\S+) quantization steps \(output scale \S+, limit (\S+)\), "
                      r"largest mean (\S+) steps \(limit (\S+)\); top-1 same (\d+)/(\d+) where", report, re.MULTILINE)
    assert fp32 and len(int8) == len(limits) >= 2, report
    for diff, same, decisive in fp32:
        assert float(diff) < 1e-4 and same == decisive and int(decisive) >= 3, report
    for stem, steps, limit, mean, limit_mean, same, decisive in int8:
        assert float(limit) == limits[stem][0] and float(limit_mean) == pytest.approx(limits[stem][1], abs=1e-3)
        assert float(steps) <= float(limit) and float(mean) <= float(limit_mean) and same == decisive, report
    # 3. The daemon published results over MQTT and stopped with exit 0 on SIGTERM.
    run = re.search(r"^run: (\d+) results? on MQTT .* SIGTERM -> exit (\d+)$", report, re.MULTILINE)
    assert run, report
    assert int(run.group(1)) >= 3 and run.group(2) == "0", report


def _int8_limits(report: str) -> dict[str, tuple[float, float]]:
    """{model stem: (max, mean) limit in steps} from the report's tolerance lines, checked against the rule."""
    found = {}
    for stem, dev, dev_mean, limit, limit_mean in re.findall(
            r"^tolerance int8 (\S+): .* max (\S+) steps, mean (\S+) steps -> limits 2x: max (\S+), mean (\S+) steps",
            report, re.MULTILINE):
        assert float(limit) == max(1.0, 2 * float(dev)), report
        assert float(limit_mean) == pytest.approx(max(0.001, 2 * float(dev_mean)), abs=2e-3), report
        # Strict enough: a wrong mean/std moved these models' outputs by 14-91 steps (docs/arm64.md).
        assert float(limit) <= 10, f"{stem}: derived limit {limit} steps is too loose to catch real faults"
        found[stem] = (float(limit), float(limit_mean))
    return found


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


@pytest.mark.arm64
@pytest.mark.timeout(2700)
def test_arm64_check_fails_on_an_injected_fault() -> None:
    """A wrong mean on the arm side (a real porting mistake) must fail the check, not pass as noise."""
    report = _run_check("--only", "outputs", "--fault", "mean", expect_rc=1)
    assert "fault injected on the arm side: --fault mean" in report
    assert re.search(r"^preprocess tensors .* -> FAIL$", report, re.MULTILINE), report
    # Not only the bit-exact tensor check: every model's outputs leave the derived limits too.
    models = re.findall(r"^(fp32|int8) (\S+): max abs diff .* -> (\S+)$", report, re.MULTILINE)
    assert len(models) >= 3 and all(verdict == "FAIL" for *_, verdict in models), report
    assert "classify top-3" not in report and "run: " not in report  # --only outputs
    assert report.rstrip().endswith("RESULT: FAIL (1)"), report


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
    for args, message in ((["--only", "outputs,bogus"], "--only: unknown step bogus"),
                          (["--fault", "upside-down"], "--fault: unknown kind upside-down")):
        wrong = subprocess.run(["bash", str(SCRIPT), "--cache", str(tmp_path), *args], check=False,
                               capture_output=True, text=True, timeout=30)
        assert wrong.returncode != 0 and message in wrong.stderr, wrong.stderr


def test_arm64_helpers_only_import_the_runtime() -> None:
    """dump_outputs.py runs inside the root, whose venv has only the runtime requirements."""
    source = (HELPERS / "dump_outputs.py").read_text()
    imported = set(re.findall(r"^\s*(?:import|from) (\w+)", source, re.MULTILINE))
    allowed = {"__future__", "argparse", "dataclasses", "json", "platform", "statistics", "sys", "time", "pathlib",
               "numpy", "onnxruntime", "cv2", "pydantic", "edgecam"}
    assert imported <= allowed, imported - allowed


def _helpers(monkeypatch: pytest.MonkeyPatch):
    """The arm64 check's compare, dump_outputs and tolerance modules (edgecam.bench.arm64)."""
    from edgecam.bench.arm64 import compare, dump_outputs, tolerance

    return [compare, dump_outputs, tolerance]


def _save(folder: Path, stem: str, rows: dict[str, np.ndarray]) -> None:
    (folder / stem).mkdir(parents=True, exist_ok=True)
    for name, logits in rows.items():
        np.save(folder / stem / f"{name}.npy", logits.astype(np.float32))


def test_int8_limits_allow_rounding_flips_and_catch_shifts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    compare, _, _ = _helpers(monkeypatch)
    tol = {"kind": "int8", "scale": 0.5, "limit_max": 2.0, "limit_mean": 0.1}
    clear = np.arange(100, dtype=np.float32) * 0.5  # top-1 99, 1 step (0.5) above the next
    clear[99] += 10.0  # margin 21 steps: decisive
    close = np.zeros(100, dtype=np.float32)
    close[7], close[8] = 1.0, 0.5  # margin 1 step: within 2 x 2 steps, too close to call
    _save(tmp_path / "host", "m", {"00": clear, "01": close})

    flips = close.copy()
    flips[7], flips[8] = 0.5, 1.0  # a one-step flip each way swaps this close top-1
    _save(tmp_path / "ok", "m", {"00": clear, "01": flips})
    assert compare.compare_model(Path("m.onnx"), tmp_path / "host", tmp_path / "ok", tol)
    line = capsys.readouterr().out
    assert "top-1 same 1/1 where the host's margin > 4 steps (1 input closer) -> ok" in line, line

    spike = clear.copy()
    spike[3] += 1.5  # 3 steps on one logit
    _save(tmp_path / "spike", "m", {"00": spike, "01": close})
    assert not compare.compare_model(Path("m.onnx"), tmp_path / "host", tmp_path / "spike", tol)
    shifted = clear + 0.5  # every logit one step up: within max, far beyond the mean limit
    _save(tmp_path / "shifted", "m", {"00": shifted, "01": close})
    assert not compare.compare_model(Path("m.onnx"), tmp_path / "host", tmp_path / "shifted", tol)
    assert capsys.readouterr().out.count("-> FAIL") == 2


def test_host_pipeline_passes_itself_and_fails_a_wrong_mean(resnet_int8: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The check's Python side, natively on a real INT8 model: derive limits, dump, compare."""
    import skimage

    compare, dump_outputs, tolerance = _helpers(monkeypatch)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(Path(skimage.__file__).parent / "data" / name, photos / name)
    inputs = tmp_path / "inputs" / resnet_int8.stem
    inputs.mkdir(parents=True)
    np.save(inputs / "00.npy", np.random.default_rng(1).standard_normal((1, 3, 160, 160)).astype(np.float32))
    tol_file = tmp_path / "tolerance.json"
    assert tolerance.main(["--inputs", str(tmp_path / "inputs"), "--photos", str(photos), "--out", str(tol_file),
                           str(resnet_int8)]) == 0
    entry = json.loads(tol_file.read_text())[resnet_int8.stem]
    assert entry["kind"] == "int8" and entry["limit_max"] == max(1.0, 2 * entry["dev_max"])
    assert float(entry["dev_max"]).is_integer()  # outputs are whole steps apart

    def dump(out: str, *extra: str) -> Path:
        argv = ["--inputs", str(tmp_path / "inputs"), "--out", str(tmp_path / out), "--photos", str(photos),
                "--repeat", "0", *extra, str(resnet_int8)]
        assert dump_outputs.main(argv) == 0
        return tmp_path / out

    # "again" and "wrong" stand for the ARM side, whose INT8 sums are always exact.
    host, again = dump("host", "--exact-int8"), dump("again", "--exact-int8")
    wrong = dump("wrong", "--exact-int8", "--fault", "mean")
    argv = ["outputs", "--host", str(host), "--tolerance", str(tol_file), str(resnet_int8)]
    assert compare.main([*argv, "--arm", str(again)]) == 0
    assert compare.main([*argv, "--arm", str(wrong)]) == 1
