"""The live view stays live: a camera whose regions run on an interval (or see no motion)
still shows every frame in the preview, and frames no region needed are not "dropped"."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from edgecam.bench.media import moving_frames
from edgecam.config import parse_config
from edgecam.service.daemon import Daemon
from edgecam.sources.memory import MemorySource
from tests.support.mqtt import wait_until


def test_an_interval_region_does_not_slow_the_preview_or_count_as_dropped(resnet_int8: Path) -> None:
    config = parse_config({"device_id": "live", "mqtt": {"enabled": False},
                           "model": {"path": str(resnet_int8), "threads": 1},
                           "cameras": {"porch": {"uri": "memory", "regions": {
                               "door": {"trigger": "interval", "interval_s": 1.0}}}}})
    daemon = Daemon(config, stdout_results=False, source=MemorySource(moving_frames(20), fps=10))
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        wait_until(lambda: daemon.inference.processed["porch"] >= 1, 60, "a first result")
        hub = daemon.pipeline.layout.cameras["porch"].hub
        version, counters = hub.version, daemon.status.counters()["cameras"]["porch"]
        time.sleep(5.0)
        after = daemon.status.counters()["cameras"]["porch"]
        shown = hub.version - version
        classified = after["processed"] - counters["processed"]
        captured = after["captured"] - counters["captured"]
        assert 4 <= classified <= 7, classified  # once a second
        assert shown >= 30, f"the preview showed {shown} frames in 5 s of a 10 fps camera"
        assert after["dropped"] - counters["dropped"] <= captured // 10, after  # not needed != dropped
        assert after["skipped"] - counters["skipped"] >= captured - classified - 5
        assert 7.0 <= (hub.camera_fps() or 0) <= 12.0, hub.camera_fps()
    finally:
        daemon.stop()
        runner.join(timeout=20)
