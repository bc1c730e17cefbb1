"""scripts/setup.sh: installs the locks with --require-hashes, is idempotent, repairs a venv that
stock Debian's `python3 -m venv` left without pip, and refuses a machine the locks do not cover
with a fallback. The install is real (from the package index, like a user's); the only stand-in
is `uname` reporting a 32-bit Raspberry Pi, hardware we lack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_locks import environment, read_lock

REPO = Path(__file__).resolve().parent.parent
SETUP = REPO / "scripts" / "setup.sh"


def _setup(*args: str, venv: Path, path_prefix: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VENV": str(venv), "PYTHON": sys.executable}
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    return subprocess.run(["bash", str(SETUP), *args], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=900)


def _installed(venv: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name'].lower().replace('_', '-').replace('.', '-'): d.version "
            "for d in m.distributions()}))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_runtime_install_is_the_lock_without_torch_and_idempotent(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # What stock Debian's `python3 -m venv` leaves when ensurepip is missing: a python, no pip.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    first = _setup("--runtime", venv=venv)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"setup: creating {venv}" in first.stdout
    assert "setup: pip install --require-hashes -r locks/runtime.txt" in first.stdout
    assert first.stdout.rstrip().endswith("setup: done (runtime): edgecam 0.1.0")

    machine = os.uname().machine
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    locked = {name: entries[0].version
              for name, entries in read_lock(REPO / "locks" / "runtime.txt").pins(environment(machine, python)).items()}
    installed = _installed(venv)
    assert {name: installed.get(name) for name in locked} == locked
    assert "torch" not in installed and "onnx" not in installed  # runtime: no torch, no onnx
    assert installed["edgecam"] == "0.1.0"
    proc = subprocess.run([str(venv / "bin" / "edgecam"), "run", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--source" in proc.stdout

    again = _setup("--runtime", venv=venv)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "creating" not in again.stdout and _installed(venv) == installed


def test_a_machine_the_locks_do_not_cover_is_refused_with_a_fallback(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "uname").write_text('#!/bin/sh\ncase "$1" in -m) echo armv7l ;; -s) echo Linux ;; '
                                '*) exec /usr/bin/uname "$@" ;; esac\n')
    (fake / "uname").chmod(0o755)
    venv = tmp_path / "venv"
    proc = _setup("--train", venv=venv, path_prefix=fake)
    assert proc.returncode == 1
    assert ("setup: error: the locks in locks/ cover Linux x86_64 and aarch64 (64-bit Raspberry Pi OS); "
            "this is Linux armv7l") in proc.stderr
    assert f"{venv}/bin/pip install -r requirements-train.txt && {venv}/bin/pip install --no-deps -e ." \
        in proc.stderr
    assert not venv.exists()


def test_bad_arguments_are_a_usage_error(tmp_path: Path) -> None:
    for args in (["--bogus"], ["--runtime", "--dev"]):
        proc = _setup(*args, venv=tmp_path / "venv")
        assert proc.returncode == 2 and proc.stderr.startswith("usage: ")
    assert not (tmp_path / "venv").exists()
