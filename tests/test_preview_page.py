"""The preview page in a real headless Chromium (Debian package ``chromium``).

The page must work offline with no external assets: the MJPEG <img> gets
decoded frames (the page writes naturalWidth/Height into #imgsize) and the
Top-3 list is filled from /api/latest by the page's own JavaScript.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from edgecam.config import HttpPreviewConfig
from edgecam.preview.http import HttpPreview
from edgecam.preview.hub import PreviewHub
from tests.preview_control import ControlDouble, chelsea_bgr, make_result

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=800,600", "--virtual-time-budget=4000",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium not found: install Debian's package with `apt-get install chromium`")


def _run_chromium(args: list[str], tmp_path: Path) -> str:
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return out


@pytest.fixture
def live_preview() -> Iterator[str]:
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
            hub.offer(frame, make_result(seq, frame))

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield f"http://127.0.0.1:{preview.port}/"
    stop.set()
    feeder.join(5)
    preview.stop()


def test_page_shows_stream_and_top3_in_headless_chromium(live_preview: str, tmp_path: Path) -> None:
    dom = _run_chromium(["--dump-dom", live_preview], tmp_path)
    size = re.search(r'id="imgsize" data-width="(\d+)" data-height="(\d+)"', dom)
    assert size, "the #imgsize cell is missing from the rendered DOM"
    assert (int(size.group(1)), int(size.group(2))) == (451, 300)  # MJPEG frames decoded by the browser
    labels = re.findall(r'<li class="label"><div>([^<]+)</div>', dom)
    assert [label.split("  ")[0] for label in labels] == ["tabby, tabby cat", "tiger cat", "Egyptian cat"]
    assert "61.0%" in labels[0]
    assert re.search(r'id="inference">12\.5 ms<', dom) and re.search(r'id="health" class="ok">ok<', dom)


def test_page_screenshot_is_not_blank(live_preview: str, tmp_path: Path) -> None:
    shot = tmp_path / "preview.png"
    _run_chromium([f"--screenshot={shot}", live_preview], tmp_path)
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (600, 800)
    assert float(image.std()) > 20  # not a blank page
    # The photo occupies the left of the page below the header: far more
    # texture there than on the empty page background at the bottom.
    photo_region = image[80:340, 40:440].astype(np.float32)
    background = image[450:590, 20:780].astype(np.float32)
    assert photo_region.std() > 25 and background.std() < 5
