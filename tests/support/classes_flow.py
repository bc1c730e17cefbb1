"""The real daemon (`edgecam run --config FILE` in a process) with the web app behind basic
auth, a real Mosquitto and a video camera, for the "your own classes" flow tests."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from edgecam.bench.media import moving_frames, write_video
from tests.support.daemon_process import DaemonProcess
from tests.support.mqtt import Broker, Collector

USER, PASSWORD = "admin", "s3cret-Pass"
PREFIX = "edgecam/classes"
ROOT = Path(__file__).resolve().parents[2]  # this checkout's edgecam, whatever the venv installed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Web:
    """JSON calls to the daemon's web app, with the right credentials unless told otherwise."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.auth = {"Authorization": f"Basic {token}"}

    def call(self, method: str, path: str, body: Optional[dict] = None, auth: bool = True,
             timeout: float = 60) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {**(self.auth if auth else {}), **({"Content-Type": "application/json"} if data else {})}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if response.headers.get_content_type() == \
                    "application/json" else raw
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def ok(self, method: str, path: str, body: Optional[dict] = None) -> Any:
        status, reply = self.call(method, path, body)
        assert 200 <= status < 300, (method, path, status, reply)
        return reply

    def wait(self, path: str, done: Callable[[Any], bool], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        reply = None
        while time.monotonic() < deadline:
            reply = self.ok("GET", path)
            if done(reply):
                return reply
            time.sleep(0.3)
        raise AssertionError(f"{what}: not within {timeout} s; last {str(reply)[:2000]}")


class ClassesDaemon:
    def __init__(self, tmp: Path, broker: Broker, model: Path) -> None:
        clip = write_video(tmp / "clip.avi", moving_frames(60), fps=10)
        self.config = tmp / "config.yaml"
        self.dataset = tmp / "data"
        self.models = tmp / "models"  # trained models and uploads land next to the daemon's model
        self.models.mkdir()
        model = Path(shutil.copy(model, self.models / model.name))
        port = free_port()
        self.config.write_text(yaml.safe_dump({
            "device_id": "classes",
            "model": {"path": str(model), "threads": 1},
            "mqtt": {"host": broker.host, "port": broker.port, "keepalive_s": 5},
            "collect": {"enabled": True, "dir": str(self.dataset), "low_score": 0.0, "on_state_change": False,
                        "every_s": 0, "min_distance": 0, "capture_interval_s": 0},
            "preview": {"http": {"enabled": True, "port": port,
                                 "auth": {"username": USER, "password_env": "EDGECAM_TEST_WEB_PASSWORD"}}},
            "cameras": {"garage": {"uri": str(clip), "fps": 10}},
        }, sort_keys=False))
        self.mqtt = Collector(broker, [f"{PREFIX}/#"])
        self.process = DaemonProcess(["--config", str(self.config)], tmp,
                                     env={"EDGECAM_TEST_WEB_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT)})
        self.web = Web(port)
        self.mqtt.wait_for(f"{PREFIX}/garage/full/result", 3, timeout=90)
        self.pid = self.process.proc.pid

    def state(self, region: str) -> Optional[dict]:
        found = self.mqtt.messages(f"{PREFIX}/garage/{region}/state")
        return found[-1].json() if found else None

    def close(self) -> None:
        self.mqtt.close()
        self.process.kill()
