"""A real Home Assistant for tests: start, onboard, add MQTT, read what it shows.

``HomeAssistant`` runs ``python -m homeassistant --skip-pip`` from the cached
virtualenv (see homeassistant_install.py) on a free loopback port, with its
config folder under the test's temp folder, and talks to it as a user's tools
do: the REST API for onboarding, config flows, states, templates and services;
the websocket API for the entity and device registries (what templates cannot
tell: entity_category, disabled_by, via_device_id, the unique_id of an entity).

Nothing in the configuration reaches the internet: location, time zone, units
and currency are set, so nothing is detected; analytics stays off. Onboarding's
core_config step starts flows for met, radio_browser and google_translate; their
packages are not installed (--skip-pip), so they fail at import with an ERROR in
the log and never open a connection (google_translate's gTTS is installed: it
sets up offline).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.homeassistant_install import Installation

HOST = "127.0.0.1"
USERNAME, PASSWORD = "edgecam", "edgecam-test-password"
T = TypeVar("T")

CONFIGURATION = """\
homeassistant:
  name: edgecam test
  latitude: 47.37
  longitude: 8.54
  elevation: 400
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: CH
  language: en
http:
  server_host: {host}
  server_port: {port}
api:
logger:
  default: info
"""


class HomeAssistantError(RuntimeError):
    """Home Assistant answered with an error, or did not come up."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class BirthWatch:
    """A paho subscriber on Home Assistant's status topic: the birth message ``online`` is
    sent once HA's MQTT client is connected, subscribed and past its discovery cooldown."""

    def __init__(self, host: str, port: int, topic: str = "homeassistant/status") -> None:
        self._online = threading.Event()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ha-birth-{uuid.uuid4().hex[:8]}")
        self._client.on_message = lambda c, u, msg: self._online.set() if msg.payload == b"online" else None
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        self._client.subscribe(topic, 1)
        if not self._subscribed.wait(10):
            self.close()
            raise HomeAssistantError(f"could not subscribe to {topic} on {host}:{port}")

    def wait(self, timeout_s: float) -> bool:
        return self._online.wait(timeout_s)

    def clear(self) -> None:
        self._online.clear()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class HomeAssistant:
    """One Home Assistant process and its config folder (kept across restart())."""

    def __init__(self, install: Installation, workdir: Path, *, port: int | None = None,
                 extra_yaml: str = "") -> None:
        self.install = install
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.config_dir = workdir / "config"
        self.log_path = self.config_dir / "home-assistant.log"
        self.token: str | None = None
        self.mqtt_broker: tuple[str, int] | None = None
        self.mqtt_entry_id: str | None = None
        self.ready_s: float | None = None  # start() until the API answered (and RUNNING once onboarded)
        self._extra_yaml = extra_yaml
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- process ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 120.0) -> HomeAssistant:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        conf = self.config_dir / "configuration.yaml"
        if not conf.exists():
            conf.write_text(CONFIGURATION.format(host=HOST, port=self.port) + self._extra_yaml)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        started = time.monotonic()
        with open(self.config_dir / "hass.stdout", "ab") as out:
            self._proc = subprocess.Popen(
                [str(self.install.python), "-m", "homeassistant", "--config", str(self.config_dir),
                 "--skip-pip", "--log-file", str(self.log_path), "--log-no-color"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.config_dir)
        # Any answer will do: 401 before onboarding (no token yet), 200 after.
        self._wait_until(lambda: self._answers("/api/"), timeout_s, "the HTTP API")
        if self.token:
            self._wait_until(lambda: self._answers("/api/config", "RUNNING"), timeout_s, "state RUNNING")
        self.ready_s = time.monotonic() - started
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (HA stops its integrations and writes .storage), then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self, timeout_s: float = 120.0) -> HomeAssistant:
        """Stop and start on the same port and config; with MQTT set up, wait for its birth
        message, sent after HA re-subscribed and read the retained discovery."""
        self.stop()
        if self.mqtt_broker is None:
            return self.start(timeout_s)
        watch = BirthWatch(*self.mqtt_broker)
        try:
            self.start(timeout_s)
            self._wait_birth(watch, timeout_s)
        finally:
            watch.close()
        return self

    def rss_bytes(self) -> int:
        """Resident memory of the HA process (it runs as one process)."""
        assert self._proc is not None
        for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise HomeAssistantError("no VmRSS in /proc status")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        """The log's last lines, each traceback cut to its last line (startup brings a few)."""
        stdout = self.config_dir / "hass.stdout"
        text = self.log_text() or (stdout.read_text(errors="replace") if stdout.exists() else "")
        out: list[str] = []
        for line in text.splitlines():
            is_record = line[:4].isdigit() and line[4:5] == "-"  # "2026-12-03 10:38:49.736 ERROR ..."
            if not is_record and out and out[-1].startswith("    | "):
                out[-1] = f"    | {line.strip()}"  # keep only the traceback's last line
            else:
                out.append(line if is_record else f"    | {line.strip()}")
        return "\n".join(out[-lines:])

    def _wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise HomeAssistantError(f"Home Assistant exited ({code}) before {what} was ready; "
                                         f"home-assistant.log ends:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise HomeAssistantError(f"{what} not ready after {timeout_s:.0f}s; "
                                         f"home-assistant.log ends:\n{self.log_tail()}")
            time.sleep(0.2)

    def _answers(self, path: str, state: str | None = None) -> bool:
        """Whether HA answers ``path`` at all, or (with ``state``) answers 200 with that core state."""
        try:
            status, body, _ = self.request("GET", path, timeout=2)
        except OSError:
            return False
        return state is None or (status == 200 and json.loads(body).get("state") == state)

    # ---- onboarding and MQTT ----------------------------------------------------------------------
    def onboard(self) -> None:
        """The four onboarding steps over REST, then a long-lived token for the rest of the test."""
        client_id = f"{self.url}/"
        user = self.api("POST", "/api/onboarding/users", {
            "client_id": client_id, "name": "Edgecam Test", "username": USERNAME, "password": PASSWORD,
            "language": "en"}, auth=False)
        token = self.api("POST", "/auth/token", form={
            "grant_type": "authorization_code", "code": user["auth_code"], "client_id": client_id}, auth=False)
        self.token = token["access_token"]
        self.api("POST", "/api/onboarding/core_config", {})
        self.api("POST", "/api/onboarding/analytics", {})
        self.api("POST", "/api/onboarding/integration", {"client_id": client_id,
                                                         "redirect_uri": f"{self.url}/?auth_callback=1"})
        steps = self.api("GET", "/api/onboarding", auth=False)
        if not all(step["done"] for step in steps):
            raise HomeAssistantError(f"onboarding not done: {steps}")
        self.token = self.ws({"type": "auth/long_lived_access_token", "client_name": "edgecam tests",
                              "lifespan": 365})
        self._wait_until(lambda: self._answers("/api/config", "RUNNING"), 120, "state RUNNING")

    def add_mqtt(self, host: str, port: int, *, discovery_prefix: str = "homeassistant",
                 timeout_s: float = 60.0) -> str:
        """The MQTT integration through its config flow (broker step), then its options flow
        (discovery on, birth and will on ``homeassistant/status``); waits for the birth message."""
        watch = BirthWatch(host, port)
        try:
            flow = self.api("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
            if flow.get("type") != "form" or flow.get("step_id") != "broker":
                raise HomeAssistantError(f"MQTT config flow: expected the broker form, got {flow}")
            entry = self.api("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                             {"broker": host, "port": port})
            if entry.get("type") != "create_entry":
                raise HomeAssistantError(f"MQTT config flow did not create an entry: {entry}")
            entry_id: str = entry["result"]["entry_id"]
            options = self.api("POST", "/api/config/config_entries/options/flow", {"handler": entry_id})
            status = f"{discovery_prefix}/status"
            done = self.api("POST", f"/api/config/config_entries/options/flow/{options['flow_id']}", {
                "discovery": True, "discovery_prefix": discovery_prefix,
                "birth_enable": True, "birth_topic": status, "birth_payload": "online",
                "will_enable": True, "will_topic": status, "will_payload": "offline"})
            if done.get("type") != "create_entry":
                raise HomeAssistantError(f"MQTT options flow failed: {done}")
            self.mqtt_broker, self.mqtt_entry_id = (host, port), entry_id
            watch.clear()  # the options flow reloaded the entry: wait for the new client's birth
            self._wait_birth(watch, timeout_s)
        finally:
            watch.close()
        return entry_id

    def _wait_birth(self, watch: BirthWatch, timeout_s: float) -> None:
        if not watch.wait(timeout_s):
            raise HomeAssistantError(f"no MQTT birth message from Home Assistant within {timeout_s:.0f}s; "
                                     f"home-assistant.log ends:\n{self.log_tail()}")

    # ---- REST -------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any | None = None, *, form: dict[str, str] | None = None,
                auth: bool = True, timeout: float = 30) -> tuple[int, bytes, str]:
        """One HTTP request: (status, body, content type); HTTP errors are returned, not raised."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            return err.code, err.read(), err.headers.get("Content-Type", "")

    def api(self, method: str, path: str, body: Any | None = None, *, form: dict[str, str] | None = None,
            auth: bool = True) -> Any:
        """A request whose answer must be 2xx; JSON decoded (text as is)."""
        status, raw, ctype = self.request(method, path, body, form=form, auth=auth)
        if status >= 300:
            raise HomeAssistantError(f"{method} {path} -> {status}: {raw[:500]!r}")
        return json.loads(raw) if "json" in ctype else raw.decode()

    def states(self) -> list[dict[str, Any]]:
        states: list[dict[str, Any]] = self.api("GET", "/api/states")
        return states

    def state(self, entity_id: str) -> dict[str, Any] | None:
        """The entity's state object, or None when HA does not know it (404)."""
        status, raw, _ = self.request("GET", f"/api/states/{entity_id}")
        if status == 404:
            return None
        if status != 200:
            raise HomeAssistantError(f"GET /api/states/{entity_id} -> {status}: {raw[:300]!r}")
        found: dict[str, Any] = json.loads(raw)
        return found

    def template(self, text: str) -> str:
        rendered: str = self.api("POST", "/api/template", {"template": text})
        return rendered

    def template_json(self, expression: str) -> Any:
        """``template_json("device_entities(device_id('sensor.x'))")`` -> a Python value."""
        return json.loads(self.template("{{ (" + expression + ") | tojson }}"))

    def call_service(self, domain: str, service: str, data: dict[str, Any] | None = None) -> Any:
        return self.api("POST", f"/api/services/{domain}/{service}", data or {})

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 30.0, what: str = "condition",
                 interval_s: float = 0.2) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that."""
        deadline = time.monotonic() + timeout
        last: T | None = None
        while True:
            last = predicate()
            if last:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
            time.sleep(interval_s)

    # ---- websocket --------------------------------------------------------------------------------
    def ws(self, message: dict[str, Any], timeout: float = 30.0) -> Any:
        """One websocket command (its own connection); returns ``result`` or raises with HA's error."""
        from websockets.sync.client import (
            connect as ws_connect,  # only the homeassistant tests need it
        )

        with ws_connect(f"ws://{HOST}:{self.port}/api/websocket", open_timeout=timeout,
                        max_size=2**24) as conn:
            hello = json.loads(conn.recv(timeout))
            if hello.get("type") != "auth_required":
                raise HomeAssistantError(f"websocket: unexpected greeting {hello}")
            conn.send(json.dumps({"type": "auth", "access_token": self.token}))
            auth = json.loads(conn.recv(timeout))
            if auth.get("type") != "auth_ok":
                raise HomeAssistantError(f"websocket auth failed: {auth}")
            conn.send(json.dumps({"id": 1, **message}))
            while True:
                answer = json.loads(conn.recv(timeout))
                if answer.get("id") == 1 and answer.get("type") == "result":
                    break
        if not answer.get("success"):
            raise HomeAssistantError(f"websocket {message.get('type')}: {answer.get('error')}")
        return answer.get("result")

    def entity_registry(self) -> list[dict[str, Any]]:
        """Registry entries (entity_id, unique_id, platform, device_id, entity_category, disabled_by...)."""
        entries: list[dict[str, Any]] = self.ws({"type": "config/entity_registry/list"})
        return entries

    def device_registry(self) -> list[dict[str, Any]]:
        """Devices (id, name, identifiers, via_device_id, area_id, configuration_url, model...)."""
        devices: list[dict[str, Any]] = self.ws({"type": "config/device_registry/list"})
        return devices

    def entity_id_for(self, unique_id: str, platform: str = "mqtt") -> str | None:
        """The entity_id HA gave the entity with this unique_id, or None."""
        return next((e["entity_id"] for e in self.entity_registry()
                     if e.get("unique_id") == unique_id and e.get("platform") == platform), None)

    def device_by_identifier(self, identifier: str, domain: str = "mqtt") -> dict[str, Any] | None:
        return next((d for d in self.device_registry() if [domain, identifier] in d.get("identifiers", [])), None)
