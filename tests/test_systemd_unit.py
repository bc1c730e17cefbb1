"""systemd/edgecam.service: verified and security-scored by the real systemd-analyze,
and the W^X promise behind MemoryDenyWriteExecute=yes checked with the kernel's
own W^X switch (PR_SET_MDWE) on the real runtime stack.

systemd-analyze verify insists that ExecStart's binary exists and is
executable; /opt/edgecam/venv/bin/edgecam only exists on an installed Pi, so
the tests render the unit with ExecStart pointing at this checkout's
installed `edgecam` entry point (same arguments) into tmp_path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edgecam.service"
INSTALLED_EXEC = "/opt/edgecam/venv/bin/edgecam"
MAX_EXPOSURE = 2.0  # "OK" band of systemd-analyze security; we measure 1.6


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found: install Debian's `systemd` package (>= 250 for --offline)")
    return path


def _render(tmp_path: Path) -> Path:
    local_exec = Path(sys.executable).with_name("edgecam")
    assert local_exec.is_file(), f"{local_exec} missing: pip install -e . first"
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_EXEC} run --config /etc/edgecam/config.yaml" in text
    rendered = tmp_path / "edgecam.service"
    rendered.write_text(text.replace(f"ExecStart={INSTALLED_EXEC}", f"ExecStart={local_exec}"))
    return rendered


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    proc = subprocess.run([_systemd_analyze(), "verify", str(_render(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "edgecam.service" not in proc.stderr, proc.stderr  # no warnings about our unit


def test_unrendered_unit_fails_verify_only_for_the_missing_binary(tmp_path: Path) -> None:
    copy = tmp_path / "edgecam.service"
    copy.write_text(UNIT.read_text())
    proc = subprocess.run([_systemd_analyze(), "verify", str(copy)], capture_output=True, text=True, timeout=60)
    problems = [line for line in proc.stderr.splitlines() if "edgecam.service" in line]
    assert problems and all(f"{INSTALLED_EXEC} is not executable" in line for line in problems), proc.stderr


def test_security_exposure_is_ok_or_better(tmp_path: Path) -> None:
    proc = subprocess.run(
        [_systemd_analyze(), "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}",
         "--no-pager", str(_render(tmp_path))],
        capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    match = re.search(r"Overall exposure level for edgecam\.service: (\d+\.\d) (\w+)", output)
    assert match, output
    exposure, level = float(match.group(1)), match.group(2)
    assert exposure <= MAX_EXPOSURE and level in ("OK", "SAFE", "PERFECT"), match.group(0)
    assert proc.returncode == 0, output


def test_unit_has_the_service_contract() -> None:
    d = _directives(UNIT.read_text())
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert 10 <= int(d["WatchdogSec"][0]) <= 120
    assert d["Restart"] == ["on-failure"] and d["RestartSec"] == ["5"]
    assert d["User"] == ["edgecam"] and d["SupplementaryGroups"] == ["video"]
    assert d["EnvironmentFile"] == ["-/etc/edgecam/edgecam.env"]
    assert d["StateDirectory"] == ["edgecam"] and d["ProtectSystem"] == ["strict"]
    assert d["DevicePolicy"] == ["closed"]
    assert {"char-video4linux rw", "char-media rw", "char-dma_heap rw"} <= set(d["DeviceAllow"])
    assert d["MemoryDenyWriteExecute"] == ["yes"] and d["NoNewPrivileges"] == ["yes"]
    assert d["CapabilityBoundingSet"] == [""]
    # StateDirectory/CacheDirectory and the config folder (the web app writes config.yaml) only
    assert d["ReadWritePaths"] == ["/etc/edgecam"] and d["ConfigurationDirectoryMode"] == ["0770"]
    assert d["WantedBy"] == ["multi-user.target"]
    # The web preview's max_connections (le=4096 in config.py, 128 by default) plus the daemon's own files fit.
    assert int(d["LimitNOFILE"][0]) >= 4096


def _tiny_models(tmp_path: Path) -> tuple[Path, Path]:
    """A small conv net as FP32 ONNX and statically quantized INT8 (QDQ): the
    INT8 one runs MLAS's int8 kernels like the real model does."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(16, 3, 3, 3)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 32, 32])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    fp32, int8 = tmp_path / "tiny_fp32.onnx", tmp_path / "tiny_int8.onnx"
    onnx.save(model, fp32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": rng.random((1, 3, 32, 32), dtype=np.float32)} for _ in range(4)])

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.batches, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return fp32, int8


MDWE_CHILD = textwrap.dedent("""
    import ctypes, mmap, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        sys.exit("PR_SET_MDWE unavailable (Linux >= 6.3 needed), errno %d" % ctypes.get_errno())
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        sys.exit("W^X is not enforced")
    except OSError:
        pass
    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda v: v + 1)  # libffi closure
    assert callback(41) == 42
    import numpy as np, cv2, onnxruntime as ort, yaml, pydantic, paho.mqtt.client
    import edgecam.cli, edgecam.web, edgecam.service.sdnotify
    from edgecam.preview.overlay import draw_overlay
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    outputs = [ort.InferenceSession(p, options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
               for p in sys.argv[1:3]]
    assert outputs[0].shape == outputs[1].shape == (1, 16, 32, 32)
    assert np.abs(outputs[0] - outputs[1]).mean() < 0.1 * np.abs(outputs[0]).mean()
    frame = np.random.default_rng(2).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", draw_overlay(frame, None, 10.0))
    assert ok and cv2.resize(frame, (160, 160)).shape == (160, 160, 3)
    print("WX-OK")
""")


def test_runtime_stack_runs_with_write_xor_execute_enforced(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes kills a process that needs W+X memory (a JIT).
    Run the daemon's imports, onnxruntime FP32+INT8 inference, OpenCV and the
    overlay with the kernel refusing W+X mappings and exec-gain."""
    fp32, int8 = _tiny_models(tmp_path)
    proc = subprocess.run([sys.executable, "-c", MDWE_CHILD, str(fp32), str(int8)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0 and "WX-OK" in proc.stdout, proc.stdout + proc.stderr
