"""Burst crops go through the collector like automatic samples: the perceptual hash keeps only
crops unlike the region's others, each one is reported back, and every sample's name gives
its time and reason (what the /classes page shows under a thumbnail)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from edgecam.config import CollectConfig
from edgecam.dataset.collector import Collector
from edgecam.dataset.store import RegionStore, Sample
from tests.test_dataset import crop


def test_a_burst_keeps_only_crops_unlike_the_regions_others(tmp_path: Path) -> None:
    stop = threading.Event()
    collector = Collector(CollectConfig(enabled=True, dir=str(tmp_path), min_distance=6), stop)
    collector.start()
    saved: list[Sample | None] = []
    try:
        same = crop("chelsea")
        noisy = np.clip(same.astype(np.int16) + 2, 0, 255).astype(np.uint8)
        for image in (same, noisy, same, crop("coffee"), crop("rocket")):
            assert collector.add_burst("cam", "door", image, saved.append)
        deadline = time.monotonic() + 10
        while len(saved) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        collector.stop()
    kept = [s for s in saved if s is not None]
    assert len(saved) == 5 and len(kept) == 3, saved
    assert {s.reason for s in kept} == {"burst"} and collector.not_new == 2
    files = sorted(p.name for p in (tmp_path / "cam" / "door" / "inbox").glob("*.jpg"))
    assert files == sorted(s.name for s in kept)


def test_samples_say_when_and_why_they_were_saved(tmp_path: Path) -> None:
    store = RegionStore(tmp_path / "cam" / "door", max_files=10, max_mb=10, min_distance=0)
    before = time.time()
    automatic = store.add(crop("chelsea"), "low-score")
    captured = store.capture(crop("coffee"), "open")
    assert automatic is not None and automatic.reason == "low-score" and captured.reason == "capture"
    stamp = time.mktime(time.strptime(automatic.time[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(stamp - before) < 2 and automatic.time.endswith("Z") and len(automatic.time) == 24
    assert Sample("inbox", "holiday.jpg", 10).reason == "" and Sample("inbox", "holiday.jpg", 10).time == ""
