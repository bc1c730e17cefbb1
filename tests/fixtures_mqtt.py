"""MQTT fixtures: a REAL Mosquitto broker per test on a free loopback port.

Never touches a broker that may already listen on 1883. ``Broker`` writes its
own mosquitto.conf, starts ``mosquitto -c`` as a subprocess, and stops it by
PID; ``restart()`` keeps the same port so clients can reconnect. Variants:
password file (``mosquitto_passwd``), TLS (CA + server cert made with the
``openssl`` CLI). ``Collector`` is a plain paho subscriber that records what
arrives. ``FakeControl`` is a thin, labelled stand-in for the daemon (not in
this scope), implementing the DaemonControl protocol in plain Python.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgecam.config import Config, parse_config
from edgecam.errors import ConfigError
from edgecam.model.types import Label
from edgecam.result import Result

HOST = "127.0.0.1"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "edgecam" / "schemas" / "result.schema.json"


def _tool(name: str, fallback: str = "") -> str:
    path = shutil.which(name) or (fallback if fallback and os.path.exists(fallback) else "")
    if not path:
        pytest.fail(f"{name} not found: install it (apt-get install -y mosquitto / openssl); "
                    "the MQTT tests need a real broker", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path  # an unrelated CA: verification against it must fail


class Broker:
    """A private mosquitto on 127.0.0.1:<free port>; stop()/restart() by PID."""

    def __init__(self, workdir: Path, *, port: Optional[int] = None, passwords: Optional[dict[str, str]] = None,
                 tls: Optional[TlsFiles] = None) -> None:
        self.host = HOST
        self.port = port or free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "mosquitto.log"
        self.conf_path = self.dir / "mosquitto.conf"
        self.tls = tls
        self._proc: Optional[subprocess.Popen[bytes]] = None
        lines = [f"listener {self.port} {HOST}", "persistence false", f"log_dest file {self.log_path}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "user root"]  # only matters when run as root: do not drop to 'mosquitto' (tmp files)
        if passwords:
            pwfile = self.dir / "passwd"
            write_password_file(pwfile, passwords)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"cafile {tls.ca_cert}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}"]
        self.conf_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> "Broker":
        exe = _tool("mosquitto", "/usr/sbin/mosquitto")
        with open(self.dir / "stderr.txt", "ab") as err:
            self._proc = subprocess.Popen([exe, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{self.log_text()}"
                                   f"{(self.dir / 'stderr.txt').read_text(errors='replace')}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> "Broker":
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is read or acknowledged."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def write_password_file(path: Path, users: dict[str, str]) -> None:
    """mosquitto_passwd -b when available, else the documented $7$ PBKDF2-SHA512 format."""
    tool = shutil.which("mosquitto_passwd")
    if tool:
        for i, (user, password) in enumerate(users.items()):
            flags = ["-c"] if i == 0 else []
            subprocess.run([tool, *flags, "-b", str(path), user, password], check=True, capture_output=True)
        return
    lines = []
    for user, password in users.items():
        salt = os.urandom(12)
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
        lines.append(f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}")
    path.write_text("\n".join(lines) + "\n")


def make_tls_files(workdir: Path) -> TlsFiles:
    """A throwaway CA, a server cert for localhost/127.0.0.1 signed by it, and a second CA."""
    openssl = _tool("openssl")
    workdir.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=workdir)

    for name in ("ca", "other_ca"):
        run("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3",
            "-subj", f"/CN=edgecam test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (workdir / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "3", "-extfile", "server.ext")
    return TlsFiles(workdir / "ca.crt", workdir / "server.crt", workdir / "server.key", workdir / "other_ca.crt")


@dataclass(frozen=True)
class Message:
    payload: bytes
    retain: bool
    at: float  # time.monotonic() on arrival
    props: Any = None  # MQTT 5 properties (collectors with protocol="5")

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A paho subscriber recording every message per topic."""

    def __init__(self, broker: Broker, topics: list[str], *, username: Optional[str] = None,
                 password: Optional[str] = None, ca_cert: Optional[Path] = None, timeout_s: float = 10.0,
                 protocol: str = "3.1.1", client_id: Optional[str] = None, session_expiry_s: int = 0) -> None:
        self._messages: dict[str, list[Message]] = defaultdict(list)
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.v5 = protocol == "5"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"collector-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        if ca_cert:
            self.client.tls_set(ca_certs=str(ca_cert))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        props = None
        if session_expiry_s:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry_s
        if self.v5:
            self.client.connect(broker.host, broker.port, keepalive=30, clean_start=False, properties=props)
        else:
            self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        if not self._subscribed.wait(timeout_s):
            raise AssertionError(f"collector could not subscribe to {topics}")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._messages[msg.topic].append(Message(bytes(msg.payload), bool(msg.retain), time.monotonic(),
                                                     msg.properties if self.v5 else None))
            self._cond.notify_all()

    def messages(self, topic: str) -> list[Message]:
        with self._cond:
            return list(self._messages[topic])

    def wait_for(self, topic: str, count: int = 1, timeout: float = 10.0) -> list[Message]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages[topic]) >= count, timeout):
                got = {t: len(m) for t, m in self._messages.items()}
                raise AssertionError(f"waited {timeout}s for {count} message(s) on {topic}; got {got}")
            return list(self._messages[topic])

    def wait_payload(self, topic: str, payload: bytes, timeout: float = 10.0) -> Message:
        """The first message on ``topic`` with exactly this payload."""
        with self._cond:
            found: list[Message] = []

            def seen() -> bool:
                found[:] = [m for m in self._messages[topic] if m.payload == payload]
                return bool(found)

            if not self._cond.wait_for(seen, timeout):
                raise AssertionError(f"no {payload!r} on {topic} within {timeout}s: "
                                     f"{[m.payload[:40] for m in self._messages[topic]]}")
            return found[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FakeControl:
    """FAKE DaemonControl (the daemon is not under test here): records calls in plain Python."""

    def __init__(self, snapshot: Optional[bytes] = b"\xff\xd8fakejpeg\xff\xd9") -> None:
        self.paused = False
        self.settings: dict[str, Any] = {"policy": "every", "min_score": 0.0, "max_fps": 0.0, "smoothing": 1}
        self.calls: list[tuple[str, Any]] = []
        self.snapshot = snapshot
        self.state_calls = 0

    def camera_names(self) -> list[str]:
        return ["default"]

    def pause(self, camera: Optional[str] = None) -> None:
        self.calls.append(("pause", camera))
        self.paused = True

    def resume(self, camera: Optional[str] = None) -> None:
        self.calls.append(("resume", camera))
        self.paused = False

    def apply_settings(self, settings: dict[str, Any], camera: Optional[str] = None,
                       region: Optional[str] = None) -> dict[str, Any]:
        self.calls.append(("apply_settings", dict(settings)) if camera is None else
                          ("apply_settings", dict(settings), camera, region))
        if settings.get("max_fps") == 999.0:  # lets a test exercise the daemon's own rejection
            raise ConfigError("max_fps: 999 is more than the camera can deliver")
        self.settings.update(settings)
        return dict(self.settings)

    def state(self) -> dict[str, Any]:
        self.state_calls += 1
        source = {"id": "demo", "connected": True, "state": "running"}
        return {"device": "fake", "paused": self.paused, "version": "test", "source": source,
                "model": {"name": "m"}, "cameras": {"default": {**source, "paused": self.paused, "regions": {}}}}

    def stats(self) -> dict[str, Any]:
        return {"fps": 1.0}

    def snapshot_jpeg(self, camera: Optional[str] = None) -> Optional[bytes]:
        self.calls.append(("snapshot_jpeg", camera))
        return self.snapshot

    def health(self) -> tuple[bool, str]:
        return True, "ok"

    def classify_image(self, bgr: Any) -> tuple[list[Label], float]:
        raise NotImplementedError


def make_result(seq: int, label: str = "tabby", score: float = 0.8, *, device: str = "testcam",
                mono: Optional[float] = None) -> Result:
    """A synthetic Result shaped like the classifier's (Top-3, scores summing below 1)."""
    t = time.monotonic() if mono is None else mono
    rest = (1.0 - score) / 2
    top = (Label(label, 281, score), Label("tiger cat", 282, rest * 0.8), Label("lynx", 287, rest * 0.2))
    return Result(device=device, source="demo", seq=seq, captured_mono=t, captured_wall=time.time(),
                  inference_start=t + 0.002, inference_end=t + 0.010, top=top, model_name="resnet18_160_int8",
                  model_precision="int8", model_input_size=160, frame_width=640, frame_height=480,
                  handed_mono=t + 0.011)


def mqtt_config(broker: Broker, device_id: Optional[str] = None, **mqtt_overrides: Any) -> Config:
    """A Config aimed at ``broker`` with short keepalive / reconnect delays for fast tests."""
    section: dict[str, Any] = {"host": broker.host, "port": broker.port, "keepalive_s": 5,
                               "reconnect": {"initial_s": 0.2, "max_s": 1.0}}
    for key, value in mqtt_overrides.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            section[key] = {**section[key], **value}
        else:
            section[key] = value
    return parse_config({"device_id": device_id or f"cam-{uuid.uuid4().hex[:6]}", "mqtt": section}, "<test>")


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Any]:
    """``broker_factory(**kwargs)`` -> a started Broker; all stopped at teardown."""
    brokers: list[Broker] = []

    def factory(**kwargs: Any) -> Broker:
        b = Broker(tmp_path / f"broker{len(brokers)}", **kwargs)
        brokers.append(b)
        return b.start()

    yield factory
    for b in brokers:
        b.stop()


@pytest.fixture
def broker(broker_factory: Any) -> Broker:
    return broker_factory()


@pytest.fixture
def collector_factory() -> Iterator[Any]:
    collectors: list[Collector] = []

    def factory(broker: Broker, topics: list[str], **kwargs: Any) -> Collector:
        c = Collector(broker, topics, **kwargs)
        collectors.append(c)
        return c

    yield factory
    for c in collectors:
        c.close()


@pytest.fixture
def sink_factory() -> Iterator[Any]:
    """``sink_factory(config, control=None, **kwargs)`` -> a started MqttSink; stopped at teardown."""
    from edgecam.publish.mqtt import MqttSink

    sinks: list[MqttSink] = []

    def factory(config: Config, control: Any = None, start: bool = True, **kwargs: Any) -> MqttSink:
        sink = MqttSink(config, control, **kwargs)
        sinks.append(sink)
        if start:
            sink.start()
        return sink

    yield factory
    for sink in sinks:
        sink.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def result_validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
