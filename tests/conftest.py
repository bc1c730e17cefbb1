"""Shared pytest configuration. Fixtures live in one module per concern."""

pytest_plugins = [
    "tests.fixtures_model",
    "tests.fixtures_mqtt",
    "tests.support.fixtures_homeassistant",
]

import pytest


@pytest.fixture(autouse=True)
def _private_state_directory(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test (and every daemon it starts) gets its own state directory, as systemd's
    StateDirectory= would: MQTT outboxes never leak from one test into another, or into ~."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path_factory.mktemp("state")))
