"""A real preview server on an ephemeral loopback port, fed with real frames.

Import the fixture into a test module with
``from tests.support.web import start_preview  # noqa: F401``.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Callable, Iterator, Optional

import pytest

from edgecam.config import HttpPreviewConfig
from edgecam.preview.hub import PreviewHub
from edgecam.web import HttpPreview
from tests.support.web_control import ControlDouble, chelsea_bgr, make_result


class Feeder:
    """Plays the inference thread: offers a real frame + Result every 20 ms."""

    def __init__(self, hub: PreviewHub, control: ControlDouble) -> None:
        self.hub, self.control = hub, control
        self.frame = chelsea_bgr()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        seq = 0
        while not self._stop.wait(0.02):
            seq += 1
            self.control.tick()
            self.hub.offer(self.frame, [make_result(seq, self.frame, inference_ms=10 + seq % 7)])


class Running:
    def __init__(self, preview: HttpPreview, control: ControlDouble, hub: PreviewHub) -> None:
        self.preview, self.control, self.hub = preview, control, hub

    @property
    def port(self) -> int:
        assert self.preview.port is not None
        return self.preview.port

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """One request; a "Host" in ``headers`` replaces the one http.client would send."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str, **kw) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
        status, _headers, body = self.request("GET", path, **kw)
        return status, json.loads(body)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def start_preview() -> Iterator[Callable[..., Running]]:
    started: list[tuple[HttpPreview, Optional[Feeder]]] = []

    def start(feed: bool = True, **cfg_kw) -> Running:  # type: ignore[no-untyped-def]
        cfg = HttpPreviewConfig(enabled=True, port=0, **cfg_kw)
        hub, control = PreviewHub(cfg.max_fps), ControlDouble()
        preview = HttpPreview(cfg, hub, control)
        preview.start()
        feeder = Feeder(hub, control) if feed else None
        if feeder:
            feeder.start()
            deadline = time.monotonic() + 5
            while hub.version == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        started.append((preview, feeder))
        return Running(preview, control, hub)

    yield start
    for preview, feeder in started:
        if feeder:
            feeder.stop()
        preview.stop()
