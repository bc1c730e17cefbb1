"""The Home Assistant installer's choices, without installing anything (runs in the default suite).

The install itself is exercised by tests/test_homeassistant_harness.py (marked homeassistant).
"""

from __future__ import annotations

import sys

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


@pytest.mark.parametrize("interpreter", [sys.executable, "/nonexistent/python3.13"])
def test_no_suitable_python_fails_naming_what_to_install(interpreter: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's own Python (3.11 here, < 3.13) or a missing one: a clear error, never a skip."""
    monkeypatch.setenv("EDGECAM_HA_PYTHON", interpreter)
    with pytest.raises(HomeAssistantUnavailable) as err:
        choose_python()
    text = str(err.value)
    assert interpreter in text and "Python >= 3.13" in text and "pyenv install 3.13" in text
    assert "apt-get install python3.13 python3.13-venv" in text and "EDGECAM_HA_PYTHON" in text

