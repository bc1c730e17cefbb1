"""The daemon in-process: latest-frame semantics, counters, max_fps, smoothing, skipping,
a slow sink, runtime settings. Real classifier, real threads; the source is the
in-memory one the pipeline benchmark uses."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgecam.bench.media import moving_frames, photo_bgr
from edgecam.config import parse_config
from edgecam.errors import ConfigError
from edgecam.model.classifier import Classifier
from edgecam.publish.sink import Sink
from edgecam.result import Result
from edgecam.service.daemon import Daemon
from edgecam.sources.memory import MemorySource


class CollectingSink(Sink):
    """Keeps every result handed to it (optionally slowly)."""

    name = "collect"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.results: list[Result] = []
        self.stats: list[dict] = []
        self.delay_s = delay_s

    def publish_result(self, result: Result) -> None:
        time.sleep(self.delay_s)
        self.results.append(result)

    def publish_stats(self, stats: dict) -> None:
        self.stats.append(stats)


def make_daemon(model_path: Path, source: MemorySource, sink: Sink, **sections) -> Daemon:
    data = {"device_id": "test", "mqtt": {"enabled": False}, "model": {"path": str(model_path), "threads": 1},
            "stats": {"interval_s": 0.5}}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return Daemon(parse_config(data), stdout_results=False, source=source, extra_sinks=[sink])


def run_for(daemon: Daemon, seconds: float) -> int:
    box: dict[str, int] = {}
    thread = threading.Thread(target=lambda: box.setdefault("code", daemon.run()))
    thread.start()
    time.sleep(seconds)
    daemon.stop()
    thread.join(timeout=5)
    assert not thread.is_alive(), "daemon did not stop"
    return box["code"]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return moving_frames(40, size=(640, 480))


def test_latest_frame_semantics_and_counters(resnet_int8: Path, frames) -> None:
    sink = CollectingSink()
    source = MemorySource(frames, fps=None)  # as fast as memcpy allows: far faster than inference
    daemon = make_daemon(resnet_int8, source, sink)
    assert run_for(daemon, 3.0) == 0

    results = sink.results
    assert len(results) > 20
    counters = daemon.status.counters()
    assert counters["captured"] == (counters["processed"] + counters["dropped"] + counters["skipped"]
                                    + counters["pending"])
    assert counters["dropped"] > counters["processed"], "source was not faster than inference"
    median_inference = statistics.median(r.inference_ms for r in results)
    # No backlog: a frame waits at most about one inference time before being classified.
    # Allow 3x plus 5 ms for scheduling on a shared 2-core machine.
    for previous, result in zip(results, results[1:]):
        bound = 3 * max(previous.inference_ms, median_inference) + 5.0
        assert result.wait_ms < bound, (result.wait_ms, previous.inference_ms, median_inference)


def test_max_fps_caps_classification_rate(resnet_int8: Path, frames) -> None:
    sink = CollectingSink()
    daemon = make_daemon(resnet_int8, MemorySource(frames, fps=60), sink, inference={"max_fps": 4})
    run_for(daemon, 2.6)
    # 4/s for 2.6 s: 10 or 11 results; without the cap it would be dozens.
    assert 8 <= len(sink.results) <= 12, len(sink.results)


def test_smoothing_reports_mean_of_last_n(resnet_int8: Path) -> None:
    classifier = Classifier(str(resnet_int8), threads=1)
    images = [photo_bgr(name) for name in ("chelsea", "coffee", "rocket")]
    expected = np.mean([classifier.probabilities(img) for img in images], axis=0)
    sink = CollectingSink()
    # Each photo exactly once, in order; then the source ends (the 4th read repeats, ignored).
    daemon = make_daemon(resnet_int8, MemorySource(images, fps=3), sink, inference={"smoothing": 3},
                         model={"top_k": 5})
    run_for(daemon, 1.3)
    third = next(r for r in sink.results if r.seq == 2)
    top_indices = np.argsort(expected)[::-1][:5]
    assert [t.index for t in third.top] == list(top_indices)
    assert np.allclose([t.score for t in third.top], expected[top_indices], atol=1e-5)


def test_skip_unchanged_skips_static_scene_only(resnet_int8: Path, frames) -> None:
    static = make_daemon(resnet_int8, MemorySource([frames[0]], fps=30), CollectingSink(),
                         inference={"skip_unchanged": {"enabled": True, "threshold": 2.0}})
    run_for(static, 1.5)
    assert static.status.counters()["processed"] == 1
    assert static.status.counters()["skipped"] >= 20

    moving = make_daemon(resnet_int8, MemorySource(frames, fps=30), CollectingSink(),
                         inference={"skip_unchanged": {"enabled": True, "threshold": 2.0}})
    run_for(moving, 1.5)
    assert moving.status.counters()["skipped"] == 0
    assert moving.status.counters()["processed"] >= 20


def test_slow_sink_never_stalls_inference(resnet_int8: Path, frames) -> None:
    slow = CollectingSink(delay_s=0.2)
    daemon = make_daemon(resnet_int8, MemorySource(frames, fps=60), slow, publish={"queue_size": 4})
    run_for(daemon, 2.0)
    processed = daemon.status.counters()["processed"]
    assert processed > 3 * len(slow.results), (processed, len(slow.results))
    assert daemon.publisher.dropped >= processed - len(slow.results) - 4 - 1


def test_stats_snapshot_values(resnet_int8: Path, frames) -> None:
    sink = CollectingSink()
    daemon = make_daemon(resnet_int8, MemorySource(frames, fps=30), sink)
    run_for(daemon, 2.2)
    assert len(sink.stats) >= 2
    stats = sink.stats[-1]
    assert 20 <= stats["capture_fps"] <= 40
    # Both rates are over the same window, but a frame captured just before it may be
    # classified just inside it: allow a few frames of slack.
    assert 0 < stats["inference_fps"] <= stats["capture_fps"] * 1.2 + 1
    assert stats["latency_ms"]["p50"] is not None and stats["latency_ms"]["p50"] <= stats["latency_ms"]["p99"]
    assert 0 < stats["rss_mb"] < 2000 and stats["cpu_percent"] > 0
    assert stats["source_state"] == "connected"


def test_runtime_settings_validate_before_applying(resnet_int8: Path, frames) -> None:
    daemon = make_daemon(resnet_int8, MemorySource(frames, fps=30), CollectingSink())
    control = daemon.controller
    applied = control.apply_settings({"max_fps": 5, "policy": "on_change", "smoothing": 2})
    assert applied["max_fps"] == 5 and applied["policy"] == "on_change"
    assert daemon.config.inference.max_fps == 5 and daemon.config.inference.smoothing == 2
    for bad, fragment in (({"max_fps": -1}, "max_fps"), ({"policy": "sometimes"}, "policy"),
                          ({"smoothing": "3"}, "smoothing"), ({"colour": 1}, "unknown setting")):
        with pytest.raises(ConfigError, match=fragment):
            control.apply_settings({"min_score": 0.5, **bad})
        assert daemon.config.publish.min_score == 0.0, "a rejected change must change nothing"
    control.pause()
    assert control.paused and control.state()["paused"] is True


def test_odd_frames_do_not_end_the_daemon_and_grey_frames_preview(resnet_int8: Path, frames) -> None:
    grey = [np.ascontiguousarray(frame[:, :, 1]) for frame in frames[:10]]
    odd = [frames[0], np.zeros((480, 640, 3), np.uint16), *grey, np.zeros((2, 4000, 3), np.uint8)]
    sink = CollectingSink()
    daemon = make_daemon(resnet_int8, MemorySource(odd, fps=30), sink)
    assert run_for(daemon, 2.0) == 0
    counters = daemon.status.counters()
    assert counters["bad_frames"] >= 2 and counters["processed"] > 10, counters
    assert all(result.frame_width == 640 for result in sink.results)
    jpeg = daemon.controller.snapshot_jpeg()
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
