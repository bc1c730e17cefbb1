"""The preview page in a real headless Chromium (Debian package ``chromium``), driven by
Playwright (tests/support/browser.py).

The page must work offline with no external assets: the MJPEG <img> gets
decoded frames (the page writes naturalWidth/Height into #imgsize) and the
Top-3 list is filled from /api/latest by the page's own JavaScript.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from edgecam.config import HttpPreviewConfig
from edgecam.preview.hub import PreviewHub
from edgecam.web import HttpPreview
from tests.support.browser import Browser, chromium
from tests.support.web_control import ControlDouble, chelsea_bgr, make_result

_SHOWN = """() => document.getElementById("imgsize").dataset.width !== "0"
    && document.querySelectorAll("#top li.label").length === 3
    && document.getElementById("inference").textContent !== "-"
    && document.getElementById("stream").complete"""


def _shown(page: Page) -> None:
    """Wait until the page shows a decoded frame, the Top-3 and the latencies."""
    try:
        page.wait_for_function(_SHOWN, timeout=30_000)
    except PlaywrightTimeoutError as err:
        raise AssertionError(f"no frame and Top-3 within 30 s; the page: {page.content()[:3000]}") from err


class Live:
    def __init__(self, preview: HttpPreview, control: ControlDouble) -> None:
        self.preview, self.control = preview, control
        self.url = f"http://127.0.0.1:{preview.port}/"


@pytest.fixture
def live() -> Iterator[Live]:
    hub, control = PreviewHub(10), ControlDouble()
    preview = HttpPreview(HttpPreviewConfig(enabled=True, port=0), hub, control)
    preview.start()
    stop = threading.Event()
    frame = chelsea_bgr()

    def feed() -> None:
        seq = 0
        while not stop.wait(0.03):
            seq += 1
            control.tick()
            hub.offer(frame, [make_result(seq, frame)])

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield Live(preview, control)
    stop.set()
    feeder.join(5)
    preview.stop()


@pytest.fixture
def live_preview(live: Live) -> str:
    return live.url


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium(["--host-resolver-rules=MAP evil.example 127.0.0.1, MAP rebind.example 127.0.0.1"]) as launched:
        yield launched


def test_page_shows_stream_and_top3_in_headless_chromium(live_preview: str, browser: Browser) -> None:
    page = browser.open(live_preview)
    _shown(page)
    dom = page.content()
    size = re.search(r'id="imgsize" data-width="(\d+)" data-height="(\d+)"', dom)
    assert size, "the #imgsize cell is missing from the rendered DOM"
    assert (int(size.group(1)), int(size.group(2))) == (451, 300)  # MJPEG frames decoded by the browser
    labels = re.findall(r'<li class="label"><div>([^<]+)</div>', dom)
    assert [label.split("  ")[0] for label in labels] == ["tabby, tabby cat", "tiger cat", "Egyptian cat"]
    assert "61.0%" in labels[0]
    assert re.search(r'id="inference">12\.5 ms<', dom) and re.search(r'id="health" class="ok">ok<', dom)


def test_page_screenshot_is_not_blank(live_preview: str, browser: Browser, tmp_path: Path) -> None:
    shot = tmp_path / "preview.png"
    page = browser.open(live_preview)
    _shown(page)
    page.screenshot(path=str(shot))  # the 800x600 viewport
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (600, 800)
    assert float(image.std()) > 20  # not a blank page
    # The photo occupies the left of the page below the header: far more
    # texture there than on the empty page background at the bottom.
    photo_region = image[80:340, 40:440].astype(np.float32)
    background = image[450:590, 20:780].astype(np.float32)
    assert photo_region.std() > 25 and background.std() < 5


# -- the page's own upload, DNS rebinding and another site's requests (issue 11, point 4) ----------

_PNG_B64 = base64.b64encode(cv2.imencode(".png", chelsea_bgr())[1].tobytes()).decode()
_PNG_BYTES_JS = f'Uint8Array.from(atob("{_PNG_B64}"), (c) => c.charCodeAt(0))'


def test_the_classify_page_uploads_a_file_in_chromium(live: Live, browser: Browser) -> None:
    page = browser.open(live.url + "classify")
    page.locator("input[type=file]").set_input_files(
        {"name": "cat.png", "mimeType": "image/png", "buffer": base64.b64decode(_PNG_B64)})
    page.get_by_role("button", name="Classify").click()
    page.wait_for_function("""() => !["", "classifying..."].includes(document.getElementById("out").textContent)""",
                           timeout=20_000)
    out = page.locator("#out").text_content() or ""
    lines = out.splitlines()
    assert [line.split()[-1] for line in lines[:3]] == ["red", "green", "blue"], out  # ControlDouble's Top-3
    assert lines[-1].endswith(" ms"), out
    assert live.control.classified == [(300, 451, 3)]
    assert live.preview.forbidden == {}


def test_a_rebound_name_gets_403_instead_of_the_page(live: Live, browser: Browser) -> None:
    url = live.url.replace("127.0.0.1", "rebind.example")
    dom = browser.open(url).content()
    assert "preview.http.allowed_hosts" in dom and 'id="stream"' not in dom, dom[:300]
    assert live.preview.forbidden["host"] >= 1


class _AttackerPage(BaseHTTPRequestHandler):
    html = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.html)))
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


def test_another_site_cannot_post_uploads_from_the_users_browser(live: Live, browser: Browser) -> None:
    """A page on evil.example sends what a browser sends without asking (no CORS
    preflight): a text/plain POST and a form POST, both carrying a real image."""
    _AttackerPage.html = b"<!doctype html><title>cats</title><p>cute cats</p>"
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), _AttackerPage)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        page = browser.open(f"http://evil.example:{attacker.server_address[1]}/")
        sent = page.evaluate("""(async () => {
            const target = "%sclassify";
            const bytes = %s;
            const results = [];
            const plain = {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: bytes};
            results.push(await fetch(target, plain).then((r) => r.type, (e) => "failed: " + e));
            const form = new FormData();
            form.append("image", new Blob([bytes], {type: "image/png"}), "cat.png");
            results.push(await fetch(target, {method: "POST", mode: "no-cors", body: form})
                .then((r) => r.type, (e) => "failed: " + e));
            return results;
        })()""" % (live.url, _PNG_BYTES_JS))
    finally:
        attacker.shutdown()
        attacker.server_close()
    assert sent == ["opaque", "opaque"]  # both requests went out
    assert live.preview.forbidden["origin"] == 2  # and both reached the server, which refused them
    assert live.control.classified == []


# -- several cameras with regions, and drawing a new region (issue 12) --------------------------

@pytest.fixture
def two_cameras() -> Iterator[Live]:
    frame = chelsea_bgr()
    boxes = {"left": (0.0, 0.0, 0.5, 1.0), "right": (0.5, 0.0, 1.0, 1.0)}
    hubs = {"garage": PreviewHub(10, boxes=boxes), "yard": PreviewHub(10)}
    control = ControlDouble()
    preview = HttpPreview(HttpPreviewConfig(enabled=True, port=0), hubs, control)
    preview.start()
    stop = threading.Event()

    def feed() -> None:
        seq = 0
        while not stop.wait(0.05):
            seq += 1
            left = dataclasses.replace(make_result(seq, frame), camera="garage", region="left")
            right = dataclasses.replace(make_result(seq, frame), camera="garage", region="right")
            hubs["garage"].offer(frame, [left, right], {"left": "cat here", "right": "empty"})
            hubs["yard"].offer(frame[:, :200], [dataclasses.replace(make_result(seq, frame), camera="yard")])

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield Live(preview, control)
    stop.set()
    feeder.join(5)
    preview.stop()


def test_the_page_shows_every_camera_its_regions_and_draws_a_box_as_yaml(two_cameras: Live,
                                                                        browser: Browser) -> None:
    page = browser.open(two_cameras.url)
    page.wait_for_function("""() => document.querySelectorAll("#regions tr").length >= 2
        && document.getElementById("stream").naturalWidth > 0""")
    rect = page.locator("#draw").bounding_box()
    assert rect is not None and rect["width"] > 100 and rect["height"] > 100, rect

    def at(fx: float, fy: float) -> tuple[float, float]:
        return rect["x"] + fx * rect["width"], rect["y"] + fy * rect["height"]

    page.mouse.move(*at(0.75, 0.6))  # a real drag on the picture, bottom right to top left
    page.mouse.down()
    page.mouse.move(*at(0.5, 0.4), steps=3)
    page.mouse.move(*at(0.25, 0.2), steps=3)
    page.mouse.up()
    garage = page.evaluate("""() => ({
        cameras: [...document.querySelectorAll("#cameras button")].map((b) => b.textContent),
        regions: [...document.querySelectorAll("#regions tr")].map((tr) => tr.textContent),
        stream: document.getElementById("stream").src,
        yaml: document.getElementById("yaml").textContent,
    })""")
    page.locator("#cameras button").nth(1).click()
    page.wait_for_function("""() => document.getElementById("stream").src.endsWith("yard")""")
    page.wait_for_timeout(700)
    yard = page.evaluate("""() => ({yard: document.getElementById("stream").src,
                                     yardRegions: document.querySelectorAll("#regions tr").length})""")
    page_state = {"garage": garage, **yard}
    garage = page_state["garage"]
    assert garage["cameras"] == ["garage", "yard"]
    assert garage["regions"][0].startswith("leftcat here") and garage["regions"][1].startswith("rightempty")
    assert garage["stream"].endswith("/stream.mjpg?camera=garage")
    assert garage["yaml"].splitlines() == ["cameras:", "  garage:", "    regions:", "      new_region:",
                                           "        box: [0.250, 0.200, 0.750, 0.600]"]
    assert page_state["yard"].endswith("/stream.mjpg?camera=yard") and page_state["yardRegions"] == 0


def test_an_unknown_camera_is_404(two_cameras: Live) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(two_cameras.url + "latest.jpg?camera=attic", timeout=5)
    assert info.value.code == 404 and b"no camera named 'attic'" in info.value.read()
    hub = two_cameras.preview.hubs["yard"]
    for _ in range(100):
        if hub.latest_jpeg() is not None:
            break
        threading.Event().wait(0.05)
    with urllib.request.urlopen(two_cameras.url + "latest.jpg?camera=yard", timeout=5) as response:
        image = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] == 320  # the 200-px-wide yard frames, upscaled to the overlay's minimum width
