"""Shared pytest configuration. Fixtures live in one module per concern."""

import pytest

pytest_plugins = [
    "tests.support.models",
    "tests.support.mqtt",
    "tests.support.web",
    "tests.support.fixtures_homeassistant",
]


@pytest.fixture(autouse=True)
def _private_state_directory(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test (and every daemon it starts) gets its own state directory, as systemd's
    StateDirectory= would: MQTT outboxes never leak from one test into another, or into ~."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path_factory.mktemp("state")))
