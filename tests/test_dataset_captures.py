"""Captures on request (the `capture` command, the web page) against automatic collection:
each has its own budget, captures are rate-limited per region and written on the
collector's thread."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edgecam.config import CollectConfig
from edgecam.dataset.collector import CaptureRateLimited, Collector
from edgecam.dataset.store import INBOX, DatasetError, RegionStore, is_capture


def distinct_crop(seed: int) -> np.ndarray:
    """A crop whose dHash differs from the others' (random blocks, scaled up)."""
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, 256, (8, 9, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))


def test_labelled_captures_never_evict_automatic_samples_and_collection_goes_on(tmp_path: Path) -> None:
    """The report: 45 labelled captures evicted all 40 automatic samples of a region, and
    collection then stopped ("dataset is full ... inbox is empty")."""
    store = RegionStore(tmp_path / "cam" / "door", max_files=40, max_mb=50, min_distance=0, max_captures=45)
    autos = [store.add(distinct_crop(i), "periodic") for i in range(40)]
    assert all(a is not None for a in autos)
    for i in range(45):
        store.capture(distinct_crop(1000 + i), label="open" if i % 2 else "closed")
    samples = store.samples()
    auto_ids = {a.id for a in autos if a is not None}
    assert auto_ids <= {s.id for s in samples}, "a capture evicted an automatic sample"
    assert sum(is_capture(s) for s in samples) == 45
    with pytest.raises(DatasetError, match="captures are full"):
        store.capture(distinct_crop(5000), label="open")
    # Automatic collection still goes on, within its own budget (the least new makes room).
    newer = [store.add(distinct_crop(2000 + i), "low-score") for i in range(10)]
    assert any(n is not None for n in newer)
    inbox_auto = [s for s in store.samples() if s.label == INBOX and not is_capture(s)]
    assert len(inbox_auto) == 40


def _collector(tmp_path: Path, **collect: object) -> tuple[Collector, threading.Event]:
    cfg = CollectConfig(enabled=True, dir=str(tmp_path / "data"), min_distance=0, **collect)
    stop = threading.Event()
    collector = Collector(cfg, stop)
    collector.start()
    return collector, stop


def test_captures_are_rate_limited_per_region_and_counted(tmp_path: Path) -> None:
    collector, stop = _collector(tmp_path, capture_interval_s=30)
    try:
        first = collector.capture("cam", "door", distinct_crop(1), "open")
        with pytest.raises(CaptureRateLimited, match=r"cam/door .*one per 30 s .*collect.capture_interval_s"):
            collector.capture("cam", "door", distinct_crop(2), "open")
        other = collector.capture("cam", "gate", distinct_crop(3), None)  # another region: its own limit
    finally:
        stop.set()
        collector.stop()
    assert first.label == "open" and other.label == INBOX
    assert collector.counters()["rate_limited"] == 1 and collector.counters()["captured"] == 2
    assert len(list((tmp_path / "data").rglob("*.jpg"))) == 2


def test_capture_writes_happen_on_the_collector_thread(tmp_path: Path) -> None:
    collector, stop = _collector(tmp_path, capture_interval_s=0)
    store = collector.store("cam", "door")
    writers: list[str] = []
    original = store.capture

    def spy(crop: np.ndarray, label: object = None) -> object:
        writers.append(threading.current_thread().name)
        return original(crop, label)  # type: ignore[arg-type]

    store.capture = spy  # type: ignore[method-assign]
    try:
        sample = collector.capture("cam", "door", distinct_crop(1), "closed")
        collector.capture("cam", "door", distinct_crop(2), None)
    finally:
        stop.set()
        collector.stop()
    assert writers == ["collector", "collector"] and threading.current_thread().name not in writers
    assert (tmp_path / "data" / "cam" / "door" / "closed" / sample.name).is_file()


def test_a_capture_with_a_bad_label_or_a_stopped_collector_is_a_clear_error(tmp_path: Path) -> None:
    """(An unknown region never reaches the collector: the control surface refuses it.)"""
    collector, stop = _collector(tmp_path, capture_interval_s=0)
    with pytest.raises(DatasetError, match="label"):
        collector.capture("cam", "door", distinct_crop(1), "open\n")
    stop.set()
    collector.stop()
    with pytest.raises(DatasetError, match="not running"):
        collector.capture("cam", "door", distinct_crop(1), None)
    assert collector.counters()["captured"] == 0
