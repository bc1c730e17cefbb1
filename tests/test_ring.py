"""FrameRing: newest-frame handoff, exact drop accounting, held slots, one copy."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecam.buffer.ring import FrameRing


def frame(value: int, shape: tuple[int, ...] = (6, 8, 3)) -> np.ndarray:
    return np.full(shape, value % 256, np.uint8)


def put(ring: FrameRing, value: int, shape: tuple[int, ...] = (6, 8, 3)) -> int:
    return ring.put(frame(value, shape), float(value), 1000.0 + value)


def check_invariant(counters: dict[str, int]) -> None:
    assert counters["captured"] == counters["taken"] + counters["dropped"] + counters["pending"]


def test_without_reader_the_oldest_frames_are_overwritten_and_counted() -> None:
    ring = FrameRing(4)
    seqs = [put(ring, i) for i in range(10)]
    assert seqs == list(range(10))
    assert ring.counters() == {"captured": 10, "taken": 0, "dropped": 6, "pending": 4, "held": 0, "capacity": 4}
    view = ring.get_latest(-1, timeout=0)
    assert view is not None
    assert (view.seq, view.captured_mono, view.captured_wall) == (9, 9.0, 1009.0)
    assert (view.image == 9).all()
    # Frames 6..8 were pending but a newer one was taken: dropped, not pending.
    assert ring.counters() == {"captured": 10, "taken": 1, "dropped": 9, "pending": 0, "held": 1, "capacity": 4}
    view.release()


def test_get_latest_returns_the_newest_frame_after_after_seq() -> None:
    ring = FrameRing(3)
    for i in range(3):
        put(ring, i)
    with ring.get_latest(-1, timeout=0) as first:
        assert first.seq == 2 and (first.image == 2).all()
    put(ring, 3)
    put(ring, 4)
    with ring.get_latest(first.seq, timeout=0) as second:
        assert second.seq == 4 and (second.image == 4).all()
    counters = ring.counters()
    assert (counters["taken"], counters["dropped"], counters["pending"]) == (2, 3, 0)
    # Nothing newer than 4: waits, then None.
    assert ring.get_latest(4, timeout=0.05) is None


def test_fast_producer_slow_consumer_keeps_exact_accounting() -> None:
    ring = FrameRing(4)
    total = 400
    done = threading.Event()
    taken: list[int] = []
    torn: list[int] = []

    def consume() -> None:
        last = -1
        while True:
            view = ring.get_latest(last, timeout=0.2)
            if view is None:
                if done.is_set():
                    return
                continue
            with view:
                if not (view.image == view.seq % 256).all():
                    torn.append(view.seq)
                taken.append(view.seq)
                last = view.seq
                time.sleep(0.002)  # inference is slower than capture
            check_invariant(ring.counters())

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(total):
        put(ring, i)
        if i % 50 == 0:
            check_invariant(ring.counters())
    done.set()
    consumer.join(5)
    assert not consumer.is_alive()
    counters = ring.counters()
    assert counters["captured"] == total
    assert counters["pending"] == 0  # the consumer drained the last frame
    assert counters["taken"] == len(taken)
    assert counters["dropped"] == total - len(taken)
    assert counters["dropped"] > 0, "a 2 ms consumer must fall behind a free-running producer"
    assert taken == sorted(set(taken)), "frames are handed out once, in order"
    assert taken[-1] == total - 1, "the newest frame is always the one taken"
    assert torn == [], "a frame was overwritten while the reader held it"


def test_a_held_slot_is_never_overwritten() -> None:
    ring = FrameRing(2)
    put(ring, 0)
    held = ring.get_latest(-1, timeout=0)
    assert held is not None
    for i in range(1, 11):
        put(ring, i)
        assert (held.image == 0).all()
    assert ring.counters() == {"captured": 11, "taken": 1, "dropped": 9, "pending": 1, "held": 1, "capacity": 2}
    second = ring.get_latest(held.seq, timeout=0)
    assert second is not None and second.seq == 10
    # Both slots held: the next frame has nowhere to go and is dropped, never written.
    assert put(ring, 11) == 11
    assert (held.image == 0).all() and (second.image == 10).all()
    assert ring.counters() == {"captured": 12, "taken": 2, "dropped": 10, "pending": 0, "held": 2, "capacity": 2}
    held.release()
    second.release()
    put(ring, 12)
    put(ring, 13)
    assert ring.counters()["dropped"] == 10, "released slots are free again"


def test_timeout_returns_none() -> None:
    ring = FrameRing(2)
    start = time.monotonic()
    assert ring.get_latest(-1, timeout=0.1) is None
    assert 0.09 <= time.monotonic() - start < 1.0


def test_close_wakes_a_waiting_reader() -> None:
    ring = FrameRing(2)
    results: list[object] = []
    waiter = threading.Thread(target=lambda: results.append(ring.get_latest(-1, timeout=30)))
    waiter.start()
    time.sleep(0.1)
    start = time.monotonic()
    ring.close()
    waiter.join(2)
    assert not waiter.is_alive()
    assert results == [None]
    assert time.monotonic() - start < 1.0
    put(ring, 1)
    assert ring.get_latest(-1, timeout=0) is None, "a closed ring hands out nothing"


def test_put_makes_the_only_copy_and_the_view_shares_the_slot() -> None:
    ring = FrameRing(2)
    source = frame(7)
    ring.put(source, 0.0, 0.0)
    slot_arrays = [slot.array for slot in ring._slots]  # white-box: the preallocated slots
    view = ring.get_latest(-1, timeout=0)
    assert view is not None
    assert not np.shares_memory(view.image, source)
    assert any(np.shares_memory(view.image, array) for array in slot_arrays)
    source[:] = 99  # the caller may reuse its buffer at once
    assert (view.image == 7).all()
    view.release()
    for i in range(20):
        put(ring, i)
    assert [slot.array for slot in ring._slots] == slot_arrays, "slots are allocated once"
    # After release the slot is reused: the stale view now shows newer pixels.
    assert not (view.image == 7).all()


def test_a_new_frame_shape_reallocates_and_drops_old_pending_frames() -> None:
    ring = FrameRing(3)
    put(ring, 1)
    held = ring.get_latest(-1, timeout=0)
    assert held is not None
    put(ring, 2)
    put(ring, 3)
    put(ring, 4, shape=(10, 12, 3))
    assert (held.image == 1).all() and held.image.shape == (6, 8, 3)
    counters = ring.counters()
    assert (counters["captured"], counters["dropped"], counters["pending"]) == (4, 2, 1)
    with ring.get_latest(held.seq, timeout=0) as view:
        assert view.image.shape == (10, 12, 3) and (view.image == 4).all()
    held.release()
    for i in range(5, 8):
        put(ring, i, shape=(10, 12, 3))
    assert all(slot.array.shape == (10, 12, 3) for slot in ring._slots)


def test_latest_copy_is_a_copy_and_not_counted() -> None:
    ring = FrameRing(2)
    assert ring.latest_copy() is None
    put(ring, 5)
    seq, image = ring.latest_copy()
    assert seq == 0 and (image == 5).all()
    assert ring.counters()["taken"] == 0
    put(ring, 6)
    assert (image == 5).all()


def test_capacity_below_two_is_rejected() -> None:
    with pytest.raises(ValueError, match="capacity"):
        FrameRing(1)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5), st.lists(st.sampled_from(["put", "put", "take", "release"]), max_size=60))
def test_random_operation_sequences_keep_the_invariants(capacity: int, ops: list[str]) -> None:
    ring = FrameRing(capacity)
    held: list = []
    last = -1
    newest_stored = -1  # the newest frame that found a slot
    value = 0
    for op in ops:
        if op == "put":
            if len(held) < capacity:
                newest_stored = value
            put(ring, value)
            value += 1
        elif op == "take":
            view = ring.get_latest(last, timeout=0)
            if newest_stored > last:
                assert view is not None and view.seq == newest_stored
                last = view.seq
                held.append(view)
            else:
                assert view is None
        elif held:
            held.pop(0).release()
        check_invariant(ring.counters())
        for view in held:
            assert (view.image == view.seq % 256).all()


def test_latest_copy_still_has_the_last_frame_after_it_was_classified() -> None:
    ring = FrameRing(2)
    put(ring, 5)
    view = ring.get_latest(-1, timeout=0)
    assert view is not None
    ring.release(view)  # inference is done with it; nothing newer has arrived yet
    latest = ring.latest_copy()
    assert latest is not None and latest[0] == 0 and int(latest[1][0, 0, 0]) == 5
