"""The Home Assistant installer's choices, without installing anything (runs in the default suite).

The install itself is exercised by tests/test_homeassistant_harness.py (marked homeassistant).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.homeassistant_install import (
    RELEASES,
    HomeAssistantUnavailable,
    choose_python,
    release_for,
)


def test_each_python_gets_the_newest_release_that_installs_on_it() -> None:
    assert release_for((3, 12, 9)) is None
    chosen = [release_for(v) for v in ((3, 13, 0), (3, 13, 1), (3, 13, 2), (3, 14, 1), (3, 14, 2))]
    assert [r.version if r else None for r in chosen] == ["2025.4.4", "2025.4.4", "2026.2.3", "2026.2.3", "2026.11.0"]
    assert [r.min_python for r in RELEASES] == sorted((r.min_python for r in RELEASES), reverse=True)


def fake_python(tmp_path: Path, version: str) -> str:
    """An "interpreter" that answers the installer's probe with ``version``."""
    exe = tmp_path / f"python{version}"
    exe.write_text(f"#!/bin/sh\necho {version}\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.parametrize("version", ["3.12.9", None])
def test_no_suitable_python_fails_naming_what_to_install(version: str | None, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python older than 3.13, or none at all: a clear error, never a skip."""
    interpreter = fake_python(tmp_path, version) if version else str(tmp_path / "missing" / "python3.13")
    monkeypatch.setenv("EDGECAM_HA_PYTHON", interpreter)
    with pytest.raises(HomeAssistantUnavailable) as err:
        choose_python()
    text = str(err.value)
    assert f"{interpreter} ({version or 'does not run or lacks venv'})" in text
    assert "Python >= 3.13" in text and "pyenv install 3.13" in text
    assert "apt-get install python3.13 python3.13-venv" in text and "EDGECAM_HA_PYTHON" in text


def test_a_suitable_python_gets_its_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECAM_HA_PYTHON", fake_python(tmp_path, "3.13.5"))
    python, version, release = choose_python()
    assert (python.name, version, release.version) == ("python3.13.5", (3, 13, 5), "2026.2.3")
