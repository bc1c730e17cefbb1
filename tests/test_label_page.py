"""Labelling collected samples in the web preview, on the real daemon: the JSON API (list,
capture, label in bulk, delete, bad names) and the /label page driven in headless Chromium."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from edgecam.bench.media import moving_frames
from edgecam.config import parse_config
from edgecam.service.daemon import Daemon
from edgecam.sources.memory import MemorySource
from tests.support.browser import chromium
from tests.support.mqtt import wait_until


class Live:
    def __init__(self, daemon: Daemon, dataset: Path) -> None:
        self.daemon = daemon
        self.dataset = dataset
        port = next(extra.port for extra in daemon._extras if getattr(extra, "port", None))
        self.url = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: dict | None = None,
             content_type: str = "application/json") -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())


@pytest.fixture
def live(resnet_int8: Path, tmp_path: Path) -> Iterator[Live]:
    config = parse_config({
        "device_id": "label", "mqtt": {"enabled": False}, "model": {"path": str(resnet_int8), "threads": 1},
        "collect": {"enabled": True, "dir": str(tmp_path / "data"), "low_score": 1.0, "min_interval_s": 0.2,
                    "min_distance": 0, "max_files": 8},
        "preview": {"http": {"enabled": True, "port": 0}},
        "cameras": {"gate": {"uri": "memory", "regions": {"latch": {"box": [0.2, 0.2, 0.8, 0.8]}}}}})
    daemon = Daemon(config, stdout_results=False, source=MemorySource(moving_frames(40), fps=20))
    runner = threading.Thread(target=daemon.run)
    runner.start()
    wait_until(lambda: any(getattr(e, "port", None) for e in daemon._extras), 30, "the web preview")
    live = Live(daemon, tmp_path / "data" / "gate" / "latch")
    wait_until(lambda: len(list((live.dataset / "inbox").glob("*.jpg"))) >= 4, 30, "four samples")
    def no_collecting(layout):  # hold the inbox still for the assertions
        collect = layout.config.collect.model_copy(update={"enabled": False})
        return layout.next(config=layout.config.model_copy(update={"collect": collect})), None

    daemon.pipeline.update(no_collecting, "test")
    yield live
    daemon.stop()
    runner.join(timeout=10)


def test_the_sample_api_lists_labels_in_bulk_deletes_and_captures(live: Live) -> None:
    status, listing = live.call("GET", "/api/samples?camera=gate&region=latch")
    inbox = [s["id"] for s in listing["samples"] if s["label"] == "inbox"]
    assert status == 200 and len(inbox) >= 4 and listing["max_files"] == 8
    status, reply = live.call("POST", "/api/samples", {"camera": "gate", "region": "latch", "ids": inbox[:3],
                                                      "label": "closed"})
    assert status == 200 and reply == {"labelled": 3}
    assert len(list((live.dataset / "closed").glob("*.jpg"))) == 3
    status, reply = live.call("POST", "/api/samples", {"camera": "gate", "region": "latch", "ids": [inbox[3]],
                                                      "delete": True})
    assert status == 200 and reply == {"deleted": 1}
    status, reply = live.call("POST", "/api/capture", {"camera": "gate", "region": "latch", "label": "open"})
    assert status == 200 and reply["sample"].startswith("open/"), reply
    status, jpeg_listing = live.call("GET", "/api/samples?camera=gate&region=latch")
    assert sorted(jpeg_listing["labels"]) == ["closed", "open"]
    with urllib.request.urlopen(f"{live.url}/api/sample.jpg?camera=gate&region=latch&id={reply['sample']}") as r:
        assert r.read()[:2] == b"\xff\xd8"

    for method, path, body, expected, message in [
        ("POST", "/api/samples", {"camera": "gate", "region": "latch", "ids": ["../../etc/passwd"],
                                  "label": "x"}, 400, "no such sample"),
        ("POST", "/api/samples", {"camera": "gate", "region": "latch", "ids": [inbox[4]] if len(inbox) > 4 else
                                  ["inbox/x.jpg"], "label": "../up"}, 400, "label"),
        ("POST", "/api/capture", {"camera": "attic", "region": "latch"}, 404, "no camera named 'attic'"),
        ("GET", "/api/samples?camera=gate&region=roof", None, 404, "no region named 'roof'"),
        ("GET", "/api/samples?camera=gate", None, 400, "missing ?region="),
    ]:
        status, reply = live.call(method, path, body)
        assert status == expected and message in reply["error"], (path, status, reply)
    status, reply = live.call("POST", "/api/capture", {"camera": "gate", "region": "latch"}, "text/plain")
    assert status == 415  # a cross-site form or text/plain POST cannot drive the API


def test_the_label_page_selects_many_and_labels_them_in_chromium(live: Live) -> None:
    with chromium() as browser:
        page = browser.open(live.url + "/label")
        inbox = page.locator('.grid[data-label="inbox"] img')
        page.wait_for_function("""() =>
            document.querySelectorAll('.grid[data-label="inbox"] img').length >= 4""", timeout=20_000)
        inbox.nth(0).click()  # real clicks on two thumbnails, a label typed in, the button
        inbox.nth(1).click()
        page.locator("#label").fill("open")
        page.locator("#apply").click()
        page.wait_for_function("""() => document.querySelector('.grid[data-label="open"]')""", timeout=20_000)
        done = page.evaluate("""() => ({status: document.getElementById("status").textContent,
            open: document.querySelectorAll('.grid[data-label="open"] img').length,
            usage: document.getElementById("usage").textContent})""")
    assert done["status"] == "2 labelled" and done["open"] == 2, done
    assert done["usage"].endswith("MB") and "/8 files" in done["usage"]
    assert len(list((live.dataset / "open").glob("*.jpg"))) == 2
    time.sleep(0.1)


def test_the_classes_api_refuses_changes_without_auth_configured(live: Live) -> None:
    """Without preview.http.auth the page's reads and bursts work, but nothing that rewrites the
    config file, trains or deploys a model."""
    for path, body in [("/api/region", {"camera": "gate", "region": "latch", "box": [0.1, 0.1, 0.5, 0.5]}),
                       ("/api/train", {"camera": "gate", "region": "latch"}),
                       ("/api/deploy", {"camera": "gate", "region": "latch"}),
                       ("/api/rollback", {"camera": "gate", "region": "latch"})]:
        status, reply = live.call("POST", path, body)
        assert status == 403 and "preview.http.auth" in reply["error"], (path, status, reply)
    status, reply = live.call("GET", "/api/region?camera=gate&region=latch")
    assert status == 200 and reply["box"] == [0.2, 0.2, 0.8, 0.8] and reply["previous"] is None
    status, reply = live.call("POST", "/api/burst", {"camera": "gate", "region": "latch", "count": 500})
    assert status == 400 and "'count' must be a number from 1 to 200" in reply["error"], reply
    status, reply = live.call("GET", "/api/train?camera=gate&region=latch")
    assert status == 200 and reply["state"] == "idle"
    status, reply = live.call("POST", "/api/suggest", {"camera": "gate", "region": "latch",
                                                       "ids": [f"inbox/x{i}.jpg" for i in range(51)]})
    assert status == 400 and "at most 50" in reply["error"], reply
