"""Collecting training samples: the per-region store (caps, novelty, labels, bad names,
a read-only or full disk) and the collector's choice of what to keep."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.bench.media import photo_bgr
from edgecam.config import CollectConfig, Config, RegionConfig
from edgecam.dataset.collector import Collector
from edgecam.dataset.store import DatasetError, RegionStore, dhash, distance
from edgecam.model.types import Label
from edgecam.regions.debounce import RegionState
from edgecam.regions.region import Region, resolve
from tests.support.mqtt import make_result, wait_until

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "camera", "coins", "moon", "brick", "grass", "gravel")


def crop(name: str, shift: int = 0) -> np.ndarray:
    return np.ascontiguousarray(photo_bgr(name, (200, 160))[:, shift:shift + 160])


def test_near_duplicates_are_not_kept_but_different_scenes_are(tmp_path: Path) -> None:
    store = RegionStore(tmp_path / "cam" / "door", max_files=50, max_mb=10, min_distance=6)
    assert store.add(crop("chelsea"), "low-score") is not None
    noisy = np.clip(crop("chelsea").astype(np.int16) + 2, 0, 255).astype(np.uint8)
    assert distance(dhash(noisy), dhash(crop("chelsea"))) < 6
    assert store.add(noisy, "low-score") is None  # a near-duplicate: not new
    assert store.add(crop("coffee"), "low-score") is not None
    assert store.capture(noisy) is not None  # an explicit capture always saves
    assert [s.label for s in store.samples()] == ["inbox"] * 3


def test_caps_in_files_evict_the_least_new_inbox_sample_never_labelled_ones(tmp_path: Path) -> None:
    store = RegionStore(tmp_path / "r", max_files=3, max_mb=10, min_distance=0)
    labelled = store.capture(crop("moon"), label="empty")
    first = store.add(crop("brick"), "low-score")
    assert first is not None
    store.move([first.id], "wall")  # the user labelled it: theirs now
    for name in ("chelsea", "coffee", "rocket", "astronaut", "camera", "coins"):
        store.add(crop(name), "low-score")
    samples = store.samples()
    assert {labelled.id, f"wall/{first.name}"} <= {s.id for s in samples}
    assert sum(s.label == "inbox" for s in samples) == 3 and len(samples) == 5


def test_caps_in_megabytes_hold(tmp_path: Path) -> None:
    store = RegionStore(tmp_path / "r", max_files=1000, max_mb=0.05, min_distance=0)  # ~51 KB
    for name in PHOTOS:
        store.add(crop(name), "periodic")
    files, size = store.usage()
    assert size <= 0.05 * 2**20 and files < len(PHOTOS)


def test_full_captures_refuse_with_a_clear_error_and_evict_nothing(tmp_path: Path) -> None:
    store = RegionStore(tmp_path / "r", max_files=10, max_mb=10, min_distance=0, max_captures=2)
    auto = store.add(crop("moon"), "periodic")
    store.capture(crop("chelsea"), label="cat")
    store.capture(crop("coffee"))
    with pytest.raises(DatasetError, match=r"captures are full \(2 files.*collect.max_captures 2.*not touched"):
        store.capture(crop("rocket"), label="cat")
    assert auto is not None and len(store.samples()) == 3


def test_labelling_moving_and_deleting_and_no_way_out_of_the_folder(tmp_path: Path) -> None:
    store = RegionStore(tmp_path / "r", max_files=10, max_mb=10, min_distance=0)
    first = store.add(crop("chelsea"), "low-score")
    second = store.add(crop("coffee"), "low-score")
    assert first and second
    assert store.move([first.id, second.id], "open") == 2
    assert sorted(p.parent.name for p in (tmp_path / "r").rglob("*.jpg")) == ["open", "open"]
    assert store.move([f"open/{second.name}"], "inbox") == 1
    assert store.delete([f"open/{first.name}"]) == 1
    assert [s.id for s in store.samples()] == [f"inbox/{second.name}"]
    (tmp_path / "secret.jpg").write_bytes(b"x")
    for bad in ("../secret.jpg", "inbox/../../secret.jpg", "open/../../../etc/passwd", "inbox/x.png", "/etc/x.jpg"):
        with pytest.raises(DatasetError, match="no such sample"):
            store.path_of(bad)
    for bad_label in ("inbox", "../up", "a/b", "", "x" * 65):
        with pytest.raises(DatasetError, match="label"):
            store.move([f"inbox/{second.name}"], bad_label) if bad_label != "inbox" else store.capture(
                crop("rocket"), label=bad_label)


def test_a_list_with_one_stale_id_moves_or_deletes_nothing(tmp_path: Path) -> None:
    """A page open in two tabs: one deleted a sample, the other labels a range with it."""
    store = RegionStore(tmp_path / "r", max_files=10, max_mb=10, min_distance=0)
    samples = [store.add(crop(name), "low-score") for name in ("chelsea", "coffee", "rocket")]
    ids = [sample.id for sample in samples if sample]
    assert len(ids) == 3
    stale = ids[1]
    assert store.delete([stale]) == 1
    with pytest.raises(DatasetError, match="no such sample"):
        store.move(ids, "open")
    with pytest.raises(DatasetError, match="no such sample"):
        store.delete(ids)
    assert sorted(s.id for s in store.samples()) == sorted([ids[0], ids[2]])  # all still in the inbox


def region(name: str = "door") -> Region:
    return Region("cam", name, resolve(RegionConfig(), Config()))


def test_the_collector_keeps_unsure_changed_and_spread_out_frames(tmp_path: Path) -> None:
    cfg = CollectConfig(enabled=True, dir=str(tmp_path / "data"), low_score=0.5, every_s=1000, min_interval_s=0,
                        min_distance=0)
    door, gate = region("door"), region("gate")
    collector = Collector(cfg, threading.Event())
    collector.start()
    frame = photo_bgr("chelsea", (320, 240))
    results = [_result("door", 0.9), _result("gate", 0.3)]
    collector.offer(frame, [door, gate], results, [])  # door: first = periodic; gate: low score
    collector.offer(frame, [door, gate], [_result("door", 0.9)], [])  # nothing new: not due
    change = RegionState("tabby", 281, 0.9, time.time(), ())
    collector.offer(photo_bgr("coffee", (320, 240)), [door], [_result("door", 0.9)], [(door, change)])
    wait_until(lambda: collector.saved == 3, 10, "three samples")
    names = sorted(p.name.split("_")[1] for p in (tmp_path / "data").rglob("*.jpg"))
    assert names == ["low-score", "periodic", "state-change"]


def _result(region_name: str, score: float):
    import dataclasses

    result = make_result(1, "tabby", score)
    return dataclasses.replace(result, camera="cam", region=region_name,
                               top=(Label("tabby", 281, score), Label("tiger cat", 282, 1 - score)))


def test_a_read_only_dataset_is_one_log_line_and_collection_goes_on(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam")
    blocker = tmp_path / "data"
    blocker.write_text("a file where the dataset folder should be")  # mkdir fails, even for root
    cfg = CollectConfig(enabled=True, dir=str(blocker), low_score=1.0, min_interval_s=0, min_distance=0)
    door = region()
    collector = Collector(cfg, threading.Event())
    collector.start()
    for i in range(5):
        collector.offer(photo_bgr(PHOTOS[i], (320, 240)), [door], [_result("door", 0.4)], [])
        time.sleep(0.05)
    wait_until(lambda: collector.failed == 5, 10, "five failed saves")
    lines = [r.getMessage() for r in caplog.records if "collect:" in r.getMessage()]
    assert len(lines) == 1 and "cannot write samples" in lines[0] and "classification goes on" in lines[0], lines


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A real small filesystem: ``tmpfs(options)`` mounts one and returns its folder."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"mount needs root (CI runs as root): {result.stderr}"
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _collecting_daemon(model: Path, folder: Path, max_files: int = 100):
    from edgecam.bench.media import moving_frames
    from edgecam.config import parse_config
    from edgecam.service.daemon import Daemon
    from edgecam.sources.memory import MemorySource

    config = parse_config({
        "device_id": "collect", "mqtt": {"enabled": False}, "model": {"path": str(model), "threads": 1},
        "collect": {"enabled": True, "dir": str(folder), "low_score": 1.0, "min_interval_s": 0.1,
                    "min_distance": 0, "max_files": max_files},
        "cameras": {"desk": {"uri": "memory", "regions": {"left": {"box": [0, 0, 0.5, 1]},
                                                          "right": {"box": [0.5, 0, 1, 1]}}}}})
    return Daemon(config, stdout_results=False, source=MemorySource(moving_frames(40), fps=20))


def _run(daemon, seconds: float) -> None:
    runner = threading.Thread(target=daemon.run)
    runner.start()
    time.sleep(seconds)
    daemon.stop()
    runner.join(timeout=10)


def test_a_running_daemon_collects_within_its_caps(resnet_int8: Path, tmp_path: Path) -> None:
    daemon = _collecting_daemon(resnet_int8, tmp_path / "data", max_files=6)
    _run(daemon, 3.0)
    for region in ("left", "right"):
        files = list((tmp_path / "data" / "desk" / region / "inbox").glob("*.jpg"))
        assert 3 <= len(files) <= 6, (region, len(files))
        width = cv2.imdecode(np.fromfile(files[0], np.uint8), cv2.IMREAD_COLOR).shape[1]
        assert width == 160  # the region's crop (half of the 320-px frame), not the annotated frame
    assert daemon.collector.saved >= 6 and daemon.status.counters()["processed"] > 20


@pytest.mark.parametrize("options, error", [("ro,size=1m", "Read-only file system"),
                                            ("size=24k", "No space left on device")])
def test_a_read_only_or_full_disk_is_one_log_line_and_classification_goes_on(
        resnet_int8: Path, tmpfs, caplog, options: str, error: str) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam")
    daemon = _collecting_daemon(resnet_int8, tmpfs(options))
    _run(daemon, 3.0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("collect:")]
    assert len(lines) == 1 and error in lines[0] and "classification goes on" in lines[0], lines
    assert daemon.collector.failed >= 5 and daemon.status.counters()["processed"] > 20
