"""`edgecam check-config` runs every check `edgecam run` makes short of opening the cameras,
and the two agree: on each config below, the problems check-config prints are exactly the
ones run reports (the error that stops it, or the regions it starts without)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from edgecam.bench import hostile_models

REPO = Path(__file__).resolve().parent.parent


def _problems(stderr: str) -> set[str]:
    """The problems a command reported: its "edgecam: error:" line, or regions left out."""
    found = set()
    for line in stderr.splitlines():
        if "edgecam: error: " in line:
            text = line.split("edgecam: error: ", 1)[1]
            found.add(re.sub(r"^\S+\.yaml: ", "", text))  # the file's name starts every line
        elif "does not run: " in line:
            found.add("region " + line.split("region ", 1)[1])
    return found


def _config(tmp: Path, model: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"device_id": "agree", "mqtt": {"enabled": False},
                            "model": {"path": str(model), "threads": 1},
                            "cameras": {"porch": {"uri": "demo", "regions": {"door": {"box": [0, 0, 0.5, 1]},
                                                                             "step": {}}}}}
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return data


CASES: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "valid": lambda tmp, model: _config(tmp, model),
    "missing model": lambda tmp, model: _config(tmp, tmp / "absent.onnx"),
    "camera without uri": lambda tmp, model: _config(tmp, model, **{"cameras.yard": {"regions": {}}}),
    "unknown key": lambda tmp, model: _config(tmp, model, **{"mqtt.prot": 1}),
    "one region's model truncated": lambda tmp, model: _config(
        tmp, model, **{"cameras.porch.regions.door.model": str(_truncated(tmp, model))}),
    "one region's model too big": lambda tmp, model: _config(
        tmp, model, **{"cameras.porch.regions.step.model": str(hostile_models.huge_input(tmp / "huge.onnx"))}),
    "missing web password file": lambda tmp, model: _config(tmp, model, **{"preview.http": {
        "enabled": True, "port": 0, "auth": {"username": "u", "password_file": str(tmp / "absent")}}}),
}


def _truncated(tmp: Path, model: Path) -> Path:
    path = tmp / "truncated.onnx"
    path.write_bytes(model.read_bytes()[:4000])
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_and_check_config_agree(case: str, tmp_path: Path, resnet_int8: Path) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(resnet_int8, model)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(CASES[case](tmp_path, model)))
    check = subprocess.run([sys.executable, "-m", "edgecam", "check-config", str(path)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    run = subprocess.run([sys.executable, "-m", "edgecam", "run", "--config", str(path), "--duration", "2",
                          "--no-mqtt"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in check.stderr + run.stderr
    assert _problems(check.stderr) == _problems(run.stderr), (check.stderr, run.stderr[-3000:])
    if case == "valid":
        assert check.returncode == 0 and run.returncode == 0 and not _problems(run.stderr)
        assert "camera porch: demo clip" in check.stdout and "region step:" in check.stdout
    else:
        assert check.returncode == 2 and _problems(check.stderr), check.stderr
