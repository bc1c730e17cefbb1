"""A real headless Chromium for the page tests, driven by Playwright's sync API.

Playwright (locked in locks/dev.txt) launches the system's Chromium (Debian's package
``chromium``, /usr/bin/chromium); it never downloads a browser of its own, so the tests run
offline. Without a Chromium the tests fail (never skip) and say what to install.

    with chromium() as browser:
        page = browser.open(url, headers={"Authorization": ...}, viewport=(1200, 900))
        page.locator("#save").click()
        browser.shot(page, "saved")  # a PNG in $EDGECAM_SCREENSHOTS, when set

Set EDGECAM_SCREENSHOTS=DIR to keep the screenshots the tests take at their steps; a test
that fails inside ``chromium()`` also leaves one of each open page there (``failed-TEST-N.png``).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest
from playwright.sync_api import Browser as PlaywrightBrowser
from playwright.sync_api import Page, sync_playwright

ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
LAUNCH_TIMEOUT_MS = 90_000  # a cold start on a busy 2-core machine takes a while
ACTION_TIMEOUT_MS = 30_000


def chromium_binary() -> str:
    """The system Chromium, or a failed test that says how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium not found: install Debian's package with `apt-get install chromium` "
                "(the tests drive it with Playwright and never download a browser)")


def screenshot_dir() -> Optional[Path]:
    """$EDGECAM_SCREENSHOTS as a directory (created), or None when it is not set."""
    where = os.environ.get("EDGECAM_SCREENSHOTS")
    if not where:
        return None
    path = Path(where)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Browser:
    def __init__(self, browser: PlaywrightBrowser) -> None:
        self.browser = browser
        self.pages: list[Page] = []

    def open(self, url: str, headers: Optional[dict[str, str]] = None,
             viewport: tuple[int, int] = (800, 600)) -> Page:
        """A new page (in its own context) at ``url``, loaded. ``headers`` go with every request
        of the page (e.g. ``Authorization`` for a server behind basic auth)."""
        context = self.browser.new_context(extra_http_headers=headers,
                                           viewport={"width": viewport[0], "height": viewport[1]})
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        page = context.new_page()
        self.pages.append(page)
        page.goto(url, wait_until="load")
        return page

    def shot(self, page: Page, name: str) -> None:
        """The whole page as ``NAME.png`` in $EDGECAM_SCREENSHOTS, when it is set."""
        where = screenshot_dir()
        if where is not None:
            page.screenshot(path=str(where / f"{name}.png"), full_page=True)


@contextmanager
def chromium(args: Sequence[str] = ()) -> Iterator[Browser]:
    """A headless system Chromium with ``ARGS`` and ``args``, closed on the way out."""
    binary = chromium_binary()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, headless=True, args=[*ARGS, *args],
                                              timeout=LAUNCH_TIMEOUT_MS)
        browser = Browser(launched)
        try:
            yield browser
        except BaseException:
            test = os.environ.get("PYTEST_CURRENT_TEST", "test").split(" ")[0].rpartition("::")[2]
            for number, page in enumerate(browser.pages):
                try:
                    browser.shot(page, f"failed-{test}-{number}")
                except Exception:  # the test's own failure is the one to report
                    pass
            raise
        finally:
            launched.close()
