"""A fixed ring of frame slots between the capture thread and the inference thread.

Capture never waits for inference: ``put()`` copies the frame into a free slot
(the only copy on the way in) and, when every slot is full of unread frames,
overwrites the oldest unread one. Inference always takes the newest frame it
has not processed yet (``get_latest``) and reads it in place through a
``FrameView`` until it calls ``release()``; a held slot is never overwritten.

Accounting, always exact: ``captured == taken + dropped + pending``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

# Slot states.
_FREE = 0  # empty, or its frame was taken/dropped and released
_WRITING = 1  # the producer is copying into it (outside the lock)
_READY = 2  # holds an unread frame ("pending")
_HELD = 3  # a reader holds a FrameView on it


@dataclass
class _Slot:
    array: Optional[np.ndarray] = None
    state: int = _FREE
    seq: int = -1
    captured_mono: float = 0.0
    captured_wall: float = 0.0


@dataclass
class FrameView:
    """One frame handed to a reader. ``image`` is a view into the ring's slot:
    valid until ``ring.release(view)`` (or the end of a ``with`` block)."""

    seq: int
    captured_mono: float
    captured_wall: float
    image: np.ndarray
    _ring: "FrameRing" = field(repr=False)
    _slot: int = field(repr=False)
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        self._ring.release(self)

    def __enter__(self) -> "FrameView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FrameRing:
    """Latest-frame handoff with a fixed number of preallocated slots.

    One producer (the capture thread); each frame is handed to one reader. Slots are
    allocated on the first frame (its shape and dtype) and again only if the
    frame shape changes. A producer that finds every slot busy (all held
    by readers or being written) drops the incoming frame and counts it.
    """

    def __init__(self, capacity: int, on_put: Optional[Callable[[], None]] = None) -> None:
        if capacity < 2:
            raise ValueError("FrameRing capacity must be >= 2 (one slot for the reader, one for capture)")
        self.capacity = capacity
        # _cond's lock protects every field below and every _Slot's state, seq and
        # timestamps; the pixel copy into a _WRITING slot and the reader's use of a
        # _HELD slot happen outside it because no one else touches those slots.
        self._cond = threading.Condition(threading.Lock())
        self._slots = [_Slot() for _ in range(capacity)]
        self._shape: Optional[tuple[int, ...]] = None
        self._dtype: Optional[np.dtype] = None
        self._next_seq = 0
        self._captured = 0
        self._taken = 0
        self._dropped = 0
        self._closed = False
        # Called (outside the lock) after each frame becomes readable: lets one reader
        # wait on several rings (the inference thread serves every camera).
        self._on_put = on_put

    # -- producer ---------------------------------------------------------------
    def put(self, image: np.ndarray, captured_mono: float, captured_wall: float) -> int:
        """Copy ``image`` into a slot and publish it. Never blocks on readers.

        Returns the frame's sequence number (counting from 0).
        """
        with self._cond:
            seq = self._next_seq
            self._next_seq += 1
            self._ensure_slots(image)
            index = self._claim_slot_locked()
            if index is None:
                self._captured += 1
                self._dropped += 1  # every slot busy: this frame never reaches a reader
                return seq
            slot = self._slots[index]
            slot.state = _WRITING
            target = slot.array
        assert target is not None
        np.copyto(target, image)  # the one copy, outside the lock
        with self._cond:
            slot.seq, slot.captured_mono, slot.captured_wall = seq, captured_mono, captured_wall
            slot.state = _READY
            self._captured += 1  # counted here so the accounting holds during the copy
            self._cond.notify_all()
        if self._on_put is not None:
            self._on_put()
        return seq

    def _ensure_slots(self, image: np.ndarray) -> None:
        if image.shape == self._shape and image.dtype == self._dtype:
            return
        # New shape: pending frames of the old shape are dropped. A held slot keeps
        # its array (the reader is using it) and is reallocated on release.
        for slot in self._slots:
            if slot.state == _READY:
                self._dropped += 1
                slot.state = _FREE
            if slot.state != _HELD:
                slot.array = np.empty(image.shape, image.dtype)
        self._shape, self._dtype = image.shape, image.dtype

    def _claim_slot_locked(self) -> Optional[int]:
        oldest_ready = None
        for index, slot in enumerate(self._slots):
            if slot.state == _FREE:
                return index
            if slot.state == _READY and (oldest_ready is None or slot.seq < self._slots[oldest_ready].seq):
                oldest_ready = index
        if oldest_ready is not None:
            self._dropped += 1  # inference is behind: overwrite the oldest unread frame
        return oldest_ready

    # -- consumer ---------------------------------------------------------------
    def get_latest(self, after_seq: int = -1, timeout: Optional[float] = None) -> Optional[FrameView]:
        """Wait for a frame newer than ``after_seq`` and hand out the newest one.

        Older unread frames are dropped (counted). Returns None on timeout or
        when the ring is closed. The caller must ``release()`` the view.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    return None
                index = self._newest_ready_locked(after_seq)
                if index is not None:
                    return self._take_locked(index)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def _newest_ready_locked(self, after_seq: int) -> Optional[int]:
        best = None
        for index, slot in enumerate(self._slots):
            if slot.state == _READY and slot.seq > after_seq:
                if best is None or slot.seq > self._slots[best].seq:
                    best = index
        return best

    def _take_locked(self, index: int) -> FrameView:
        taken = self._slots[index]
        for slot in self._slots:
            if slot is not taken and slot.state == _READY and slot.seq < taken.seq:
                slot.state = _FREE  # skipped: a newer frame was taken
                self._dropped += 1
        taken.state = _HELD
        self._taken += 1
        assert taken.array is not None
        return FrameView(taken.seq, taken.captured_mono, taken.captured_wall, taken.array, self, index)

    def release(self, view: FrameView) -> None:
        """Give the view's slot back to the producer. Idempotent."""
        with self._cond:
            if view._released:
                return
            view._released = True
            slot = self._slots[view._slot]
            if slot.state == _HELD and slot.seq == view.seq:
                slot.state = _FREE
                if slot.array is not None and self._shape is not None and (
                        slot.array.shape != self._shape or slot.array.dtype != self._dtype):
                    slot.array = np.empty(self._shape, self._dtype)

    # -- other ------------------------------------------------------------------
    def latest_copy(self) -> Optional[tuple[int, np.ndarray]]:
        """A copy of the newest frame still in the ring (pending, held, or already
        classified and not yet overwritten), for snapshots and sample captures; it
        does not count as taken."""
        with self._cond:
            candidates = [s for s in self._slots if s.array is not None and s.seq >= 0 and (
                s.state in (_READY, _HELD) or (s.state == _FREE and s.array.shape == self._shape))]
            if not candidates:
                return None
            newest = max(candidates, key=lambda s: s.seq)
            # Copy under the lock: a READY slot could be overwritten right after.
            return newest.seq, newest.array.copy()  # type: ignore[union-attr]

    def counters(self) -> dict[str, int]:
        """captured == taken + dropped + pending, at every instant."""
        with self._cond:
            pending = sum(1 for s in self._slots if s.state == _READY)
            held = sum(1 for s in self._slots if s.state == _HELD)
            return {
                "captured": self._captured,
                "taken": self._taken,
                "dropped": self._dropped,
                "pending": pending,
                "held": held,
                "capacity": self.capacity,
            }

    def close(self) -> None:
        """Wake every waiting reader; get_latest returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
