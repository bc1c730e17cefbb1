"""Print the pip requirements of the integrations the test Home Assistant loads.

Run with Home Assistant's own Python (it imports ``homeassistant``), not the
project's. Home Assistant installs an integration's requirements from the index
the first time it loads it; the harness installs them once, at install time,
and then runs ``hass --skip-pip``, so a test start never needs the network.

The set: what bootstrap always loads (core, logging/http, frontend, defaults),
what our configuration.yaml names, MQTT and the entity platforms MQTT discovery
can create, google_translate (see below), and every dependency of those (from
the manifests).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from homeassistant import bootstrap  # type: ignore[import-not-found]
from homeassistant.components.mqtt.const import SUPPORTED_COMPONENTS  # type: ignore[import-not-found]

COMPONENTS = Path(bootstrap.__file__).parent / "components"
CONFIGURED = {"api", "http", "mqtt", "onboarding", "config"}
# Onboarding's core_config step sets up google_translate, met and radio_browser. Only the first
# works offline (it speaks on demand); met and radio_browser would reach the internet at every
# start, so their packages stay out: their flows fail at import, once, with an ERROR in the log.
ONBOARDING_OFFLINE = {"google_translate"}


def manifest(domain: str) -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads((COMPONENTS / domain / "manifest.json").read_text())
    return data


def closure(seeds: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = sorted(seeds)
    while todo:
        domain = todo.pop()
        if domain in seen or not (COMPONENTS / domain / "manifest.json").exists():
            continue
        seen.add(domain)
        todo.extend(manifest(domain).get("dependencies", []))
    return seen


def main() -> None:
    seeds = (bootstrap.CORE_INTEGRATIONS | bootstrap.LOGGING_AND_HTTP_DEPS_INTEGRATIONS
             | bootstrap.FRONTEND_INTEGRATIONS | bootstrap.DEFAULT_INTEGRATIONS
             | CONFIGURED | ONBOARDING_OFFLINE | set(SUPPORTED_COMPONENTS)) - {"sentry"}
    requirements = sorted({req for d in closure(seeds) for req in manifest(d).get("requirements", [])})
    sys.stdout.write("\n".join(requirements) + "\n")


if __name__ == "__main__":
    main()
