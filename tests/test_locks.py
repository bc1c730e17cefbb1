"""The lock files in locks/ match the requirement files they were made from (scripts/lock.sh).

Each lock is a universal resolution: one file for Linux x86_64 and aarch64 and CPython 3.11+,
machine-specific pins carry environment markers. For every such environment this checks that
every requirement is pinned in its lock with a version its specifier admits, that every entry
is pinned exactly and hashed, and that the lock's record of its inputs (sha256 of each
requirement file) is current: editing a requirement file without relocking fails here.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import tomllib
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
SETS = {"runtime": "requirements.txt", "train": "requirements-train.txt",
        "build": "requirements-build.txt", "dev": "requirements-dev.txt"}
MACHINES = ("x86_64", "aarch64")
PYTHONS = ("3.11", "3.12", "3.13")
TORCH = {"x86_64": ("2.14.1", "0.29.1"), "aarch64": ("2.9.1", "0.24.1")}  # torch, torchvision
RELOCK = "run scripts/lock.sh"
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})$")


def environment(machine: str, python: str) -> dict[str, str]:
    """PEP 508 marker values of a Linux machine running CPython ``python``."""
    return {"platform_machine": machine, "python_version": python, "python_full_version": f"{python}.0",
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython"}


ENVIRONMENTS = [(m, p, environment(m, p)) for m in MACHINES for p in PYTHONS]


def applies(marker: Marker | None, env: dict[str, str]) -> bool:
    return marker is None or marker.evaluate(env)


def requirement_chain(root: Path, name: str) -> list[str]:
    """``name`` and every file it includes with -r, depth first (as scripts/lock.sh records them)."""
    chain = [name]
    for line in (root / name).read_text().splitlines():
        match = re.match(r"-r\s*(\S+)", line)
        if match:
            chain += requirement_chain(root, match.group(1))
    return chain


def requirements(root: Path, name: str) -> list[Requirement]:
    """The requirements of ``name`` and of the files it includes."""
    found = []
    for file in requirement_chain(root, name):
        for line in (root / file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                found.append(Requirement(line))
    return found


@dataclass(frozen=True)
class Entry:
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def version(self) -> str:
        spec = list(self.requirement.specifier)
        return spec[0].version if len(spec) == 1 and spec[0].operator == "==" else ""


@dataclass(frozen=True)
class Lock:
    entries: tuple[Entry, ...]
    inputs: dict[str, str]  # requirement file -> sha256 recorded when the lock was made
    problems: tuple[str, ...]  # lines that are no exact, hashed pin

    def pins(self, env: dict[str, str]) -> dict[str, list[Entry]]:
        """canonical name -> the entries that apply in ``env``."""
        found: dict[str, list[Entry]] = {}
        for entry in self.entries:
            if applies(entry.requirement.marker, env):
                found.setdefault(canonicalize_name(entry.requirement.name), []).append(entry)
        return found


def read_lock(path: Path) -> Lock:
    entries, inputs, problems = [], {}, []
    logical = re.sub(r"\\\n\s*", " ", path.read_text())
    in_inputs = False
    for line in logical.splitlines():
        if line.startswith("# Inputs (sha256"):
            in_inputs = True
            continue
        if in_inputs and (m := re.match(r"#   (\S+) ([0-9a-f]{64})$", line)):
            inputs[m.group(1)] = m.group(2)
            continue
        in_inputs = False
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text, *hashes = line.split(" --hash=")
        digests = [m.group(1) for h in hashes if (m := _HASH.match("--hash=" + h.strip()))]
        entry = Entry(Requirement(text.strip()), tuple(digests))
        if not entry.version:
            problems.append(f"{path.name}: {text.strip()}: not pinned with ==")
        if not hashes or len(digests) != len(hashes):
            problems.append(f"{path.name}: {entry.requirement.name}: no sha256 hash")
        entries.append(entry)
    return Lock(tuple(entries), inputs, tuple(problems))


def lock_problems(root: Path) -> list[str]:
    """Everything that does not match between the requirement files and the locks under ``root``."""
    problems: list[str] = []
    dev = read_lock(root / "locks" / "dev.txt")
    for set_name, req_file in SETS.items():
        lock_path = root / "locks" / f"{set_name}.txt"
        lock = read_lock(lock_path)
        problems += lock.problems
        recorded = dict(lock.inputs)
        for file in requirement_chain(root, req_file):
            digest = hashlib.sha256((root / file).read_bytes()).hexdigest()
            if recorded.pop(file, None) != digest:
                problems.append(f"{file} changed since locks/{set_name}.txt was made: {RELOCK}")
        problems += [f"locks/{set_name}.txt records {file}, which it no longer uses: {RELOCK}"
                     for file in recorded]
        reqs = requirements(root, req_file)
        for machine, python, env in ENVIRONMENTS:
            where = f"locks/{set_name}.txt ({machine}, Python {python})"
            pins, dev_pins = lock.pins(env), dev.pins(env)
            for name, entries in pins.items():
                if len(entries) > 1:
                    problems.append(f"{where}: {name} pinned {len(entries)} times")
                dev_versions = [e.version for e in dev_pins.get(name, [])]
                if dev_versions != [entries[0].version]:
                    problems.append(f"{where}: {name}=={entries[0].version}, but locks/dev.txt has "
                                    f"{dev_versions or 'none'}: {RELOCK}")
            for req in reqs:
                if not applies(req.marker, env):
                    continue
                entries = pins.get(canonicalize_name(req.name), [])
                if not entries:
                    problems.append(f"{where}: {req.name} ({req_file}) is not locked: {RELOCK}")
                elif not req.specifier.contains(entries[0].version, prereleases=True):
                    problems.append(f"{where}: {req.name}=={entries[0].version} does not satisfy "
                                    f"{req} ({req_file}): {RELOCK}")
    return problems


def test_the_locks_match_the_requirement_files() -> None:
    problems = lock_problems(REPO)
    assert not problems, "\n".join(problems)


def test_every_lock_entry_is_an_exact_pin_with_hashes() -> None:
    for set_name in (*SETS, "uv"):
        lock = read_lock(REPO / "locks" / f"{set_name}.txt")
        assert lock.problems == ()
        assert lock.entries and all(entry.version and entry.hashes for entry in lock.entries)


def test_torch_is_pinned_per_machine_and_only_where_it_belongs() -> None:
    for machine, python, env in ENVIRONMENTS:
        for set_name in SETS:
            pins = read_lock(REPO / "locks" / f"{set_name}.txt").pins(env)
            got = tuple(pins[name][0].version if name in pins else None for name in ("torch", "torchvision"))
            # The point of the split: the daemon and on-device head training need no torch.
            want = TORCH[machine] if set_name in ("build", "dev") else (None, None)
            assert got == want, (set_name, machine, python)


def test_lock_script_pins_the_uv_it_installs() -> None:
    match = re.search(r"^UV_VERSION=(\S+)$", (REPO / "scripts" / "lock.sh").read_text(), re.MULTILINE)
    assert match is not None
    assert [e.version for e in read_lock(REPO / "locks" / "uv.txt").entries] == [match.group(1)]


def test_pyproject_dependencies_are_the_runtime_requirements() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert sorted(map(str, map(Requirement, project["dependencies"]))) == \
        sorted(map(str, requirements(REPO, "requirements.txt")))
    lowest = min(Version(p) for p in PYTHONS)
    assert project["requires-python"] == f">={lowest}"


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "locks").mkdir(parents=True)
    for name in SETS.values():
        shutil.copy(REPO / name, root / name)
    for lock in (REPO / "locks").glob("*.txt"):
        shutil.copy(lock, root / "locks" / lock.name)
    assert lock_problems(root) == []
    return root


def test_editing_a_requirement_file_without_relocking_fails(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    build = root / "requirements-build.txt"
    build.write_text(build.read_text() + "requests>=2\n")
    problems = lock_problems(root)
    assert "requirements-build.txt changed since locks/build.txt was made: run scripts/lock.sh" in problems
    assert "requirements-build.txt changed since locks/dev.txt was made: run scripts/lock.sh" in problems
    assert ("locks/build.txt (aarch64, Python 3.12): requests (requirements-build.txt) is not locked: "
            "run scripts/lock.sh") in problems
    assert not any("locks/runtime.txt" in p or "locks/train.txt" in p for p in problems), problems


def test_a_tightened_specifier_or_a_hand_edited_lock_fails(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    runtime = root / "requirements.txt"
    runtime.write_text(runtime.read_text().replace("numpy>=1.26,<3", "numpy>=1.26,<2"))
    lock = root / "locks" / "train.txt"
    lock.write_text(re.sub(r"(?m)^(onnx==\S+) \\\n(\s+--hash=\S+ \\\n)*\s+--hash=\S+$", r"\1", lock.read_text()))
    problems = lock_problems(root)
    assert "requirements.txt changed since locks/runtime.txt was made: run scripts/lock.sh" in problems
    assert any(p.startswith("locks/runtime.txt (x86_64, Python 3.11): numpy==2.") and "numpy<2,>=1.26" in p
               for p in problems), problems
    assert "train.txt: onnx: no sha256 hash" in problems
