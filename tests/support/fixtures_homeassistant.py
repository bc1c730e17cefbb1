"""Pytest fixtures for a real Home Assistant (tests marked ``homeassistant``).

``homeassistant_install`` (session): the cached install; a missing Python >= 3.13
fails the test with what to install (never a skip). ``homeassistant``: a started,
onboarded Home Assistant with the MQTT integration on the test's own ``broker``
and discovery on; stopped at teardown. ``homeassistant_factory`` makes more, or
ones with extra configuration (request ``broker`` before it, so HA stops first).
A failing test that used one gets the tail of its home-assistant.log in the report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.homeassistant import HomeAssistant
from tests.support.homeassistant_install import (
    HomeAssistantUnavailable,
    Installation,
    ensure_installed,
)


@pytest.fixture(scope="session")
def homeassistant_install() -> Installation:
    try:
        return ensure_installed()
    except HomeAssistantUnavailable as exc:
        problem = str(exc)
    pytest.fail(f"Home Assistant is not available for the tests marked homeassistant: {problem}", pytrace=False)


class HomeAssistantFactory:
    """``factory(broker=None, extra_yaml="")`` -> a started, onboarded HA; with a broker, MQTT added."""

    def __init__(self, install: Installation, workdir: Path) -> None:
        self.install = install
        self.workdir = workdir
        self.made: list[HomeAssistant] = []

    def __call__(self, broker: Any = None, extra_yaml: str = "") -> HomeAssistant:
        ha = HomeAssistant(self.install, self.workdir / f"homeassistant{len(self.made)}", extra_yaml=extra_yaml)
        self.made.append(ha)
        ha.start()
        ha.onboard()
        if broker is not None:
            ha.add_mqtt(broker.host, broker.port)
        return ha

    def stop_all(self) -> None:
        for ha in self.made:
            ha.stop()


@pytest.fixture
def homeassistant_factory(homeassistant_install: Installation, tmp_path: Path) -> Iterator[HomeAssistantFactory]:
    factory = HomeAssistantFactory(homeassistant_install, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def homeassistant(homeassistant_factory: HomeAssistantFactory, broker: Any) -> Iterator[HomeAssistant]:
    ha = homeassistant_factory(broker)
    yield ha
    ha.stop()  # before the broker stops (set up after it, torn down before it)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed:
        return
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    shown: set[int] = set()
    for value in funcargs.values():
        for ha in value.made if isinstance(value, HomeAssistantFactory) else [value]:
            if isinstance(ha, HomeAssistant) and id(ha) not in shown:
                shown.add(id(ha))
                report.sections.append((f"home-assistant.log of {ha.url} (last lines)", ha.log_tail()))
