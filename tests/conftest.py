"""Shared pytest configuration. Fixtures live in one module per concern."""

pytest_plugins = [
    "tests.fixtures_model",
    "tests.fixtures_mqtt",
]
