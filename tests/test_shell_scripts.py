"""Every shell script in the repository is shellcheck-clean (all severities, sourced files followed).

The scripts are found, not listed: a file git knows (tracked, or untracked and not ignored) is a
shell script when its name ends in .sh/.bash, its shebang runs sh/bash/dash/ksh, or it carries a
`# shellcheck shell=` directive. So a new script is checked without touching this file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHELLS = ("sh", "bash", "dash", "ksh")
_SHEBANG = re.compile(rb"^#!\s*(?:\S*/)?(?:env\s+(?:-\S+\s+)*)?(\S+)")
_DIRECTIVE = re.compile(rb"^#\s*shellcheck\s+shell=", re.MULTILINE)


def repo_files(root: Path) -> list[Path]:
    """The files git would show in `root`: tracked plus untracked-but-not-ignored."""
    git = shutil.which("git")
    if git is None:
        pytest.fail("git not found: apt-get install -y git", pytrace=False)
    out = subprocess.run([git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         check=True, capture_output=True).stdout
    return sorted({root / name for name in out.decode().split("\0") if name})


def is_shell_script(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    if path.suffix in (".sh", ".bash"):
        return True
    with path.open("rb") as handle:
        head = handle.read(1024)
    shebang = _SHEBANG.match(head)
    if shebang and Path(shebang.group(1).decode(errors="replace")).name in SHELLS:
        return True
    return bool(_DIRECTIVE.search(head.split(b"\n\n", 1)[0]))


def shell_scripts(root: Path) -> list[Path]:
    return [path for path in repo_files(root) if is_shell_script(path)]


SCRIPTS = shell_scripts(REPO)


def test_finds_the_known_scripts() -> None:
    found = {path.relative_to(REPO).as_posix() for path in SCRIPTS}
    assert {".ci/run", "scripts/setup.sh", "scripts/arm64/checks.sh", "scripts/install-pi.sh"} <= found, found
    assert not {name for name in found if name.endswith(".py")}, found


def test_discovery_covers_a_new_script_and_skips_the_rest(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    files = {
        "tools/deploy": "#!/bin/bash\necho hi\n",
        "tools/envsh": "#!/usr/bin/env -S sh -e\necho hi\n",
        "lib/common.bash": "f() { :; }\n",
        "lib/sourced": "# shellcheck shell=bash\nf() { :; }\n",
        "run.py": "#!/usr/bin/env python3\nprint(1)\n",
        "README.md": "# Tools\n\n```sh\ntools/deploy\n```\n",
        "build/out.sh": "#!/bin/sh\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / ".gitignore").write_text("/build/\n")
    found = {path.relative_to(tmp_path).as_posix() for path in shell_scripts(tmp_path)}
    assert found == {"tools/deploy", "tools/envsh", "lib/common.bash", "lib/sourced"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.relative_to(REPO).as_posix() for p in SCRIPTS])
def test_shellcheck_clean(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck not found: apt-get install -y shellcheck (scripts/setup.sh --dev)", pytrace=False)
    result = subprocess.run([shellcheck, "--external-sources", "--severity=style", str(script)], cwd=REPO,
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
