"""PreviewHub: capped copies, lazy one-encode-per-frame JPEGs, histograms."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from edgecam.preview.hub import INFERENCE_HISTOGRAM, TOTAL_HISTOGRAM, PreviewHub
from tests.support.web_control import chelsea_bgr, make_result


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_nothing_before_the_first_offer() -> None:
    hub = PreviewHub(10)
    assert hub.latest_jpeg() is None and hub.latest_result() is None and hub.latest_annotated() is None
    assert hub.wait_for_new(0, timeout=0.05) is None
    assert hub.fps() is None


def test_frame_is_copied_so_later_ring_buffer_writes_do_not_leak_in() -> None:
    hub = PreviewHub(10)
    frame = chelsea_bgr()
    hub.offer(frame, [make_result(1, frame)])
    frame[:] = 0  # the ring buffer slot gets reused
    jpeg = hub.latest_jpeg()
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (300, 451, 3)
    assert image[200:, :].mean() > 60  # still the cat, not the zeroed buffer


def test_copies_are_capped_at_max_fps_but_every_result_is_recorded() -> None:
    clock = ManualClock()
    hub = PreviewHub(max_fps=5, clock=clock)
    frame = chelsea_bgr()
    for seq in range(1, 31):  # 30 results at 30 FPS = one second
        hub.offer(frame, [make_result(seq, frame, inference_ms=10.0 + seq)])
        clock.now += 1 / 30
    assert hub.version == 5  # one copy every 0.2 s
    assert hub.results_seen() == 30
    assert hub.latest_result().seq == 30
    assert abs(hub.fps() - 30.0) < 0.01
    snap = hub.histograms()[INFERENCE_HISTOGRAM][1]
    assert snap.count == 30
    assert abs(snap.sum - sum(10.0 + s for s in range(1, 31)) / 1000) < 1e-6
    total = hub.histograms()[TOTAL_HISTOGRAM][1]
    assert total.count == 30 and total.sum > snap.sum  # total = wait + inference


def test_encoding_is_lazy_and_once_per_frame_for_many_viewers() -> None:
    clock = ManualClock()
    hub = PreviewHub(max_fps=10, clock=clock)
    frame = chelsea_bgr()
    for seq in range(1, 6):
        hub.offer(frame, [make_result(seq, frame)])
        clock.now += 1.0
    assert hub.encodes == 0  # nobody asked

    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def viewer() -> None:
        barrier.wait()
        results.append(hub.latest_jpeg())

    threads = [threading.Thread(target=viewer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 8 and len(set(results)) == 1
    assert hub.encodes == 1
    hub.latest_annotated()
    assert hub.encodes == 1  # annotated frame shared with the JPEG, no new encode


def test_wait_for_new_returns_each_new_version_once() -> None:
    clock = ManualClock()
    hub = PreviewHub(max_fps=10, clock=clock)
    frame = chelsea_bgr()
    got: list[int] = []

    def consumer() -> None:
        version = 0
        while len(got) < 3:
            item = hub.wait_for_new(version, timeout=5)
            assert item is not None
            version = item[0]
            got.append(version)

    thread = threading.Thread(target=consumer)
    thread.start()
    for seq in range(1, 4):
        while len(got) < seq - 1:
            threading.Event().wait(0.01)
        clock.now += 1.0
        hub.offer(frame, [make_result(seq, frame)])
    thread.join(10)
    assert got == [1, 2, 3]
    assert hub.wait_for_new(3, timeout=0.05) is None


def test_annotated_frame_contains_the_overlay() -> None:
    hub = PreviewHub(10)
    frame = np.full((480, 640, 3), 128, np.uint8)
    hub.offer(frame, [make_result(1, frame)])
    version, annotated = hub.latest_annotated()
    assert version == 1
    assert not np.array_equal(annotated, frame)
    assert np.array_equal(annotated[300:], frame[300:])


def test_wait_for_next_result_waits_only_while_results_flow() -> None:
    clock = ManualClock()
    hub = PreviewHub(10, clock=clock)
    frame = chelsea_bgr()
    assert hub.wait_for_next_result(timeout=5.0) is False  # no camera yet: no wait at all
    hub.offer(frame, [make_result(1, frame)])
    clock.now += 6.0
    assert hub.wait_for_next_result(timeout=5.0) is False  # stalled or paused: no wait either
    clock.now -= 6.0
    arrived: list[bool] = []
    waiter = threading.Thread(target=lambda: arrived.append(hub.wait_for_next_result(timeout=30.0)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # results flow: it waits for the next one
    hub.offer(frame, [make_result(2, frame)])  # within the copy interval: no frame copy, still a result
    waiter.join(5)
    assert arrived == [True] and hub.version == 1
