"""Install a real Home Assistant into its own cached virtualenv, once.

Home Assistant needs a newer Python than the project's (2025.4.4: >= 3.13.0;
later releases >= 3.13.2 or >= 3.14.2), so it gets a virtualenv of its own under
``<repo>/.cache/homeassistant/<release>-py<python>/``, made with the newest
Python >= 3.13 found on the machine. ``RELEASES`` pins the release per Python
range, so every install of a given Python is the same. A stamp file written last
marks a finished install; a file lock keeps two test processes from installing
at once. uv does the heavy install (pip took 3.5 min cold here, uv 1 min, and
Home Assistant itself depends on it); pip only bootstraps uv.

The requirements of the integrations the test instance loads (the frontend, MQTT,
...) are installed here too, so ``hass --skip-pip`` never reaches for the index
at start. Where no suitable Python exists, ``ensure_installed`` raises with what
to install: the tests fail, they do not skip.

Overrides: ``EDGECAM_HA_PYTHON`` (an interpreter) and ``EDGECAM_HA_VERSION`` (a
release, for trying a newer one by hand).
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "homeassistant"
REQUIREMENTS_SCRIPT = Path(__file__).resolve().with_name("ha_requirements.py")
UV_BOOTSTRAP = "uv==0.6.10"  # the uv that homeassistant 2025.4.4 pins; it replaces itself with the release's own


@dataclass(frozen=True)
class Release:
    version: str
    min_python: tuple[int, int, int]
    tested: str  # where this pin was checked end to end with tests/test_homeassistant_harness.py


# Newest first. The newest release whose min_python the interpreter meets is used.
# The minimums are the releases' own requires-python (the index's answer to
# `pip index versions homeassistant --python-version X`, 2026-12-03).
RELEASES = (
    Release("2026.11.0", (3, 14, 2), "not yet: no Python >= 3.14.2 on the dev machine"),
    Release("2026.2.3", (3, 13, 2), "not yet: no Python >= 3.13.2 on the dev machine"),
    Release("2025.4.4", (3, 13, 0), "Python 3.13.0 (pyenv), Debian 12 x86_64, 2026-12-03"),
)


class HomeAssistantUnavailable(RuntimeError):
    """No Python to run Home Assistant on, or its install failed."""


@dataclass(frozen=True)
class Installation:
    version: str
    python: Path  # the virtualenv's interpreter: run `python -m homeassistant`
    directory: Path
    seconds: float  # how long ensure_installed took this time (0 when only checked)


def _probe(exe: str) -> tuple[int, int, int] | None:
    """The interpreter's version, or None when it does not run (a pyenv shim without a version)
    or lacks the venv module (Debian's python3.X without python3.X-venv)."""
    code = "import sys, venv, ensurepip; print('%d.%d.%d' % sys.version_info[:3])"
    try:
        out = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, minor, micro = (int(x) for x in out.stdout.strip().split("."))
    return major, minor, micro


def _candidates() -> list[str]:
    names = [shutil.which(n) for n in ("python3.16", "python3.15", "python3.14", "python3.13", "python3")]
    pattern_dirs = ["/usr/bin/python3.1[3-9]", "/usr/local/bin/python3.1[3-9]",
                    os.path.expanduser("~/.pyenv/versions/3.1[3-9]*/bin/python3"),
                    os.path.expanduser("~/.local/share/uv/python/cpython-3.1[3-9]*/bin/python3")]
    found = [p for pattern in pattern_dirs for p in sorted(glob.glob(pattern))]
    seen: list[str] = []
    for path in [n for n in names if n] + found:
        if path not in seen:
            seen.append(path)
    return seen


def release_for(python_version: tuple[int, int, int]) -> Release | None:
    return next((r for r in RELEASES if python_version >= r.min_python), None)


def choose_python() -> tuple[Path, tuple[int, int, int], Release]:
    """The interpreter that gets the newest pinned release (ties: the newer Python)."""
    forced = os.environ.get("EDGECAM_HA_PYTHON")
    candidates = [forced] if forced else _candidates()
    best: tuple[Path, tuple[int, int, int], Release] | None = None
    looked: list[str] = []
    for exe in candidates:
        version = _probe(exe)
        looked.append(f"{exe} ({'.'.join(map(str, version)) if version else 'does not run or lacks venv'})")
        release = release_for(version) if version else None
        if version is None or release is None:
            continue
        if best is None or (-RELEASES.index(release), version) > (-RELEASES.index(best[2]), best[1]):
            best = (Path(exe), version, release)
    if best is None:
        raise HomeAssistantUnavailable(
            "Home Assistant needs Python >= 3.13 with the venv module, and none was found. Looked at: "
            + "; ".join(looked or ["nothing"]) + ". Install one: `pyenv install 3.13` (or newer), or on "
            "Debian 13 `apt-get install python3.13 python3.13-venv`, or point EDGECAM_HA_PYTHON at one.")
    return best


def _run(cmd: list[str], log: Path, timeout_s: float) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        try:
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise HomeAssistantUnavailable(f"timed out after {timeout_s:.0f}s: {' '.join(cmd)}\n"
                                           f"{_tail(log)}") from exc
    if done.returncode != 0:
        raise HomeAssistantUnavailable(f"exit {done.returncode}: {' '.join(cmd)}\n{_tail(log)}")


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _uv(base: Path) -> list[str]:
    # No --compile-bytecode: compiling all of HA took 80 of 127 s here; Python writes the .pyc of
    # what HA imports on its first start instead (a few seconds, once).
    return [str(base / "venv" / "bin" / "uv"), "pip", "install", "--native-tls",
            "--python", str(base / "venv" / "bin" / "python")]


def _install_release(python: Path, base: Path, version: str, log: Path) -> None:
    """A new virtualenv in ``base`` with homeassistant==version."""
    _run([str(python), "-m", "venv", str(base / "venv")], log, 300)
    _run([str(base / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          UV_BOOTSTRAP], log, 300)
    _run([*_uv(base), f"homeassistant=={version}"], log, 1200)


def _install_integration_requirements(base: Path, log: Path) -> list[str]:
    """What HA would install at first start (ha_requirements.py), with HA's own constraints."""
    venv_python = base / "venv" / "bin" / "python"
    constraints = next((base / "venv" / "lib").glob("python3.*/site-packages/homeassistant/package_constraints.txt"))
    # -I: not the script's folder on sys.path (it holds our homeassistant.py, not theirs)
    listed = subprocess.run([str(venv_python), "-I", str(REQUIREMENTS_SCRIPT)], capture_output=True, text=True,
                            timeout=120, check=False)
    if listed.returncode != 0:
        raise HomeAssistantUnavailable(f"{REQUIREMENTS_SCRIPT.name} failed:\n{listed.stderr[-3000:]}")
    reqs = listed.stdout.split()
    _run([*_uv(base), "--constraint", str(constraints), *reqs], log, 600)
    return reqs


def ensure_installed() -> Installation:
    """Install (first time) or find (later) the pinned Home Assistant; safe across processes.

    The stamp records the release, the interpreter and a hash of ha_requirements.py: a new
    release or interpreter means a new virtualenv, a changed requirements script only a
    re-run of that step."""
    started = time.monotonic()
    python, py_version, release = choose_python()
    version = os.environ.get("EDGECAM_HA_VERSION", release.version)
    py_text = ".".join(map(str, py_version))
    base = CACHE / f"{version}-py{py_text}"
    stamp = base / "installed.json"
    wanted = {"homeassistant": version, "python": str(python), "python_version": py_text}
    recipe = hashlib.sha256(REQUIREMENTS_SCRIPT.read_bytes()).hexdigest()[:16]
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        found = json.loads(stamp.read_text()) if stamp.exists() else {}
        same_venv = {k: found.get(k) for k in wanted} == wanted
        if same_venv and found.get("recipe") == recipe:
            return Installation(version, base / "venv" / "bin" / "python", base, 0.0)
        log = base / "install.log"
        if not same_venv:
            if base.exists():
                shutil.rmtree(base)  # another interpreter, or an interrupted install: start over
            base.mkdir(parents=True)
            _install_release(python, base, version, log)
        stamp.unlink(missing_ok=True)
        extra = _install_integration_requirements(base, log)
        seconds = time.monotonic() - started
        stamp.write_text(json.dumps({**wanted, "recipe": recipe, "requirements": extra,
                                     "install_s": round(seconds, 1)}, indent=1) + "\n")
        return Installation(version, base / "venv" / "bin" / "python", base, seconds)


if __name__ == "__main__":  # `python tests/support/homeassistant_install.py`: install now, say where
    inst = ensure_installed()
    print(f"homeassistant {inst.version} in {inst.directory} ({inst.seconds:.0f}s)")
