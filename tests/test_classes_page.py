"""The whole "your own classes" flow in a real headless Chromium against the real daemon
process: draw a region on the live frame (the centre-crop warning), save it, burst-capture,
label a range with shift-click and the rest with the keyboard, train (torch-free, in a child
process), deploy. The region's state topic then carries the new classes, and the daemon's
PID never changed. Mouse and keys are real input events (Playwright's mouse, keyboard and clicks
with modifiers), not JavaScript clicks.

Driver: Playwright on the system Chromium (tests/support/browser.py). Set EDGECAM_SCREENSHOTS=DIR
to keep a screenshot of each step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page as PlaywrightPage

from edgecam.bench.models import ModelPair
from tests.support.browser import Browser, chromium
from tests.support.classes_flow import ClassesDaemon
from tests.support.mqtt import Broker, wait_until


class Page:
    def __init__(self, browser: Browser, page: PlaywrightPage) -> None:
        self.browser, self.page = browser, page

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def until(self, condition: str, timeout: float, what: str) -> Any:
        try:
            return self.page.wait_for_function(f"() => ({condition})", timeout=timeout * 1000,
                                               polling=200).json_value()
        except PlaywrightError as err:  # TimeoutError is one
            status = self.js("document.getElementById('status').textContent")
            raise AssertionError(f"{what}: {condition} not true within {timeout} s; status: {status!r}") from err

    def at(self, selector: str, fx: float = 0.5, fy: float = 0.5) -> tuple[float, float]:
        """Viewport coordinates of a point of the element (scrolled into view first)."""
        rect = self.js(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
            return [r.left + r.width * {fx}, r.top + r.height * {fy}]; }})()""")
        return rect[0], rect[1]

    def click(self, selector: str, modifiers: Sequence[Literal["Shift", "Control"]] = ()) -> None:
        self.page.locator(selector).click(modifiers=list(modifiers))

    def drag(self, selector: str, start: tuple[float, float], end: tuple[float, float]) -> None:
        x0, y0 = self.at(selector, *start)
        x1, y1 = self.at(selector, *end)
        self.page.mouse.move(x0, y0)
        self.page.mouse.down()
        self.page.mouse.move(x1, y1, steps=5)
        self.page.mouse.up()

    def key(self, keys: str) -> None:
        self.page.keyboard.press(keys)

    def type(self, selector: str, text: str) -> None:
        field = self.page.locator(selector)
        field.fill(text)  # focus, replace the value with real text input
        field.blur()  # the page reads it on change

    def shot(self, name: str) -> None:
        self.browser.shot(self.page, name)


def test_the_whole_flow_in_chromium(broker: Broker, effnet_models: ModelPair, tmp_path: Path) -> None:
    daemon = ClassesDaemon(tmp_path, broker, effnet_models.int8)
    try:
        with chromium() as browser:
            _flow(Page(browser, browser.open(daemon.web.url + "/classes", daemon.web.auth, (1200, 900))), daemon)
    finally:
        daemon.close()


def _flow(page: Page, daemon: ClassesDaemon) -> None:
    page.js("window.ready")
    page.until("document.getElementById('frame').naturalWidth > 0", 20, "the live frame")
    page.type("#region", "door")

    # 1. define: a wide box loses much to the centre crop (warned); a squarer one does not
    page.drag("#draw", (0.05, 0.3), (0.95, 0.55))
    assert float(page.js("document.getElementById('cropwarn').dataset.lost")) > 0.3
    assert "sees only" in page.js("document.getElementById('cropwarn').textContent")
    page.shot("1-define-warning")
    page.drag("#draw", (0.2, 0.1), (0.7, 0.8))
    assert float(page.js("document.getElementById('cropwarn').dataset.lost")) < 0.3
    page.js("document.getElementById('confirm').value = 2")
    page.click("#save")
    page.until("document.getElementById('status').textContent.startsWith('saved door')", 30, "saving")
    page.until("document.getElementById('live').naturalWidth > 0", 10, "the region's live crop")
    page.shot("1-define-saved")
    box = yaml.safe_load(daemon.config.read_text())["cameras"]["garage"]["regions"]["door"]["box"]
    assert abs(box[0] - 0.2) < 0.02 and abs(box[3] - 0.8) < 0.02 and box[2] > box[0], box
    daemon.mqtt.wait_for("edgecam/classes/garage/door/result", 3, timeout=30)

    # 2. collect: a burst; thumbnails show time and reason
    page.js("document.getElementById('count').value = 14; document.getElementById('seconds').value = 2")
    page.click("#burst")
    page.until("document.getElementById('burststate').textContent.startsWith('last burst: 14/14')", 30,
               "the burst")
    count = page.until("document.querySelectorAll('.grid[data-label=\"inbox\"] figure').length", 10, "thumbs")
    assert count >= 10
    caption = page.js("document.querySelector('figcaption').textContent")
    assert "command (burst)" in caption and caption[2] == ":", caption
    page.shot("2-collect")

    # 3. label: suggestions, a shift-click range, then the rest with ctrl+a and enter
    page.click("#suggest")
    page.until("document.querySelectorAll('figcaption .guess').length >= 10", 30, "suggestions")
    figures = "#folders .grid[data-label=\"inbox\"] figure"
    page.click(f"{figures}:nth-child(1)")
    page.click(f"{figures}:nth-child(5)", ["Shift"])
    assert page.js("document.getElementById('selcount').textContent") == "5 selected"
    page.type("#label", "closed")
    page.click("#apply")
    page.until("document.querySelectorAll('.grid[data-label=\"closed\"] figure').length === 5", 20, "closed")
    page.type("#label", "open")
    page.click(f"{figures}:nth-child(1)")  # focus on the page, not in a field
    page.key("Control+a")
    assert page.js("document.getElementById('selcount').textContent") == f"{count - 5} selected"
    page.key("Enter")
    page.until("document.querySelectorAll('.grid[data-label=\"inbox\"] figure').length === 0", 20, "labelled")
    counts = page.js("document.getElementById('counts').textContent")
    assert counts == f"closed: 5 · open: {count - 5} · inbox: 0", counts
    assert "closed has 5" in page.js("document.getElementById('hints').textContent")
    page.shot("3-label")

    # 4. train, in the page: progress, then the report and the confusion matrix
    page.click("#trainbtn")
    page.until("['done', 'failed'].includes(document.getElementById('trainstate').dataset.state)", 300,
               "training")
    assert page.js("document.getElementById('trainstate').dataset.state") == "done", \
        page.js("document.getElementById('trainstate').textContent")
    assert "garage_door_int8.onnx" in page.js("document.getElementById('report').textContent")
    page.until("document.getElementById('confusion').naturalWidth > 0", 10, "the confusion matrix")
    page.shot("4-train")

    # 5. deploy: live, checked; the region's state topic carries the new classes, same PID
    page.click("#deploybtn")
    outcome = page.until("document.getElementById('deploystate').dataset.outcome", 60, "the deploy")
    assert outcome == "trusted" or outcome.startswith("running, on probation"), outcome
    assert "kept in the config" in page.js("document.getElementById('deploystate').textContent")
    page.shot("5-deploy")
    wait_until(lambda: (daemon.state("door") or {}).get("label") in ("closed", "open")
               and {t["label"] for t in daemon.state("door")["top"]} <= {"closed", "open"}, 30,
               "the new classes on garage/door's state topic")
    assert daemon.process.proc.poll() is None and daemon.process.proc.pid == daemon.pid
    assert not page.js("document.getElementById('rollback').disabled")
