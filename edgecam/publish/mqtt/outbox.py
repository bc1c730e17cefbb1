"""The durable outbox: state changes waiting for the broker, in order, on disk.

Every region state change and every result the on_change policy admits is
written here before it is sent, and deleted only once the broker has
acknowledged it (QoS 1 PUBACK, see ``mqtt/pump.py``). Ids only grow, so "in
order" holds across restarts.

**Writes are grouped.** ``append`` and ``delete`` change memory at once; a small
thread (``_Flusher``) writes what changed to the SQLite file (``outbox_db.py``) at
most ``batch_delay_s`` (50 ms) later, in one transaction: one fsync per batch
instead of one per entry, so an outage that queues hundreds of entries a second
does not queue as many fsyncs. An entry is on disk within that bound (plus the
write itself); one acknowledged before it got there never touches the disk.
``batch_delay_s=0`` writes each change before the call returns (the old way).

**State changes keep their place.** Retained entries (region state changes) may
use the whole ``max_bytes``; on_change results at most ``result_share`` of it.
A result makes room only by evicting older results, never a state change; a
state change evicts results first, then the oldest state changes.

All pending entries are mirrored in memory (bounded by ``max_bytes``): reads
never touch the disk, and when the disk fails (read-only directory, disk full,
a second daemon holding the file) the outbox logs ONE error and carries on from
memory, which is what edgecam did before it had an outbox.
"""

from __future__ import annotations

import bisect
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from pathlib import Path

from edgecam.publish.mqtt.outbox_db import Entry, OutboxFile, explain

logger = logging.getLogger(__name__)

__all__ = ["BATCH_DELAY_S", "RESULT_SHARE", "Entry", "Outbox", "default_path", "state_directory"]

BATCH_DELAY_S = 0.05  # a change is written at most this long after it was made (one fsync per batch)
RESULT_SHARE = 0.25  # the part of max_bytes on_change results may use; state changes may use it all


def state_directory(environ: dict[str, str] | None = None) -> Path:
    """``$STATE_DIRECTORY`` (systemd's StateDirectory=), else the XDG state directory."""
    env = os.environ if environ is None else environ
    state_dirs = env.get("STATE_DIRECTORY", "")
    if state_dirs:
        return Path(state_dirs.split(":")[0])
    xdg = env.get("XDG_STATE_HOME", "")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "edgecam"


def default_path(device_id: str, environ: dict[str, str] | None = None) -> Path:
    return state_directory(environ) / f"outbox-{device_id}.sqlite3"


class Outbox:
    """Pending entries in id order; on disk when it can be, always mirrored in memory.

    Thread-safe: the publisher thread appends, the MQTT worker reads and deletes."""

    def __init__(self, path: Path | None, max_bytes: int, result_share: float = RESULT_SHARE,
                 batch_delay_s: float = BATCH_DELAY_S) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.result_bytes = int(max_bytes * result_share)
        self.batch_delay_s = batch_delay_s
        self.evicted_states = 0  # dropped to make room
        self.evicted_results = 0
        self.refused_results = 0  # results that found no room (state changes held the rest)
        self.quarantined = 0
        self.problem: str | None = None if path is not None else "disabled in the config"
        self._lock = threading.Lock()  # guards the memory mirror and the pending writes
        self._flush_lock = threading.Lock()  # serialises writes to the file (taken before _lock)
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._ids: list[int] = []  # the same ids, sorted: pending_after() bisects instead of scanning
        self._by_topic: dict[str, deque[int]] = {}
        self._by_kind: dict[bool, OrderedDict[int, None]] = {True: OrderedDict(), False: OrderedDict()}
        self._bytes = {True: 0, False: 0}  # state changes / results
        self._last_id = 0
        self._file: OutboxFile | None = None
        self._to_insert: dict[int, Entry] = {}  # appended, not yet on disk
        self._to_delete: list[int] = []  # acknowledged or evicted, still on disk
        self._writing = 0  # changes in the transaction being written now
        self.commits = 0  # transactions written (one fsync each)
        self._flusher: _Flusher | None = None

    # ------------------------------------------------------------ lifecycle
    def open(self) -> Outbox:
        """Open (or create) the file and load what a previous run left. Never raises:
        a file that cannot be used is one error in the log, then memory only."""
        if self.path is None:
            logger.info("MQTT outbox: off (mqtt.outbox.enabled: false); state changes wait in memory only")
            return self
        if self._file is not None:
            return self  # already open
        try:
            self._file = OutboxFile(self.path)
            entries, last_id, self.quarantined = self._file.load()
        except (sqlite3.Error, OSError) as err:
            self._give_up(err, "cannot open it")
            return self
        with self._lock:
            for entry in entries:
                self._add(entry)
            self._last_id = max(self._last_id, last_id)
            while self._bytes[False] > self.result_bytes and self._evict_oldest(False):
                pass  # the limits may be smaller than last time
            while self.size > self.max_bytes and (self._evict_oldest(False) or self._evict_oldest(True)):
                pass
        if entries:
            logger.info("MQTT outbox %s: %d state change(s) from an earlier run wait for the broker",
                        self.path, len(entries))
        if self.batch_delay_s > 0:
            self._flusher = _Flusher(self.flush, self.batch_delay_s)
            self._flusher.start()
        return self

    def close(self) -> None:
        """Write what is pending, then close the file."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.stop()
        self.flush()
        with self._flush_lock:
            file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except sqlite3.Error as err:
                logger.warning("MQTT outbox %s: closing failed: %s", self.path, err)

    # ------------------------------------------------------------ writing
    def append(self, topic: str, payload: bytes, retain: bool, camera: str = "", region: str = "") -> Entry | None:
        """Keep one entry (on disk within ``batch_delay_s``). None: a result that found no room."""
        size = len(topic.encode("utf-8")) + len(payload)
        with self._lock:
            if not self._make_room(size, retain):
                self.refused_results += 1
                if self.refused_results in (1, 10, 100) or self.refused_results % 1000 == 0:
                    logger.warning("MQTT outbox full of state changes (%d bytes): an on_change result was not "
                                   "kept (%d so far)", self.max_bytes, self.refused_results)
                return None
            self._last_id += 1
            entry = Entry(self._last_id, topic, payload, retain, camera, region, time.time())
            self._add(entry)
            if self._file is not None:
                self._to_insert[entry.id] = entry
        self._written_soon()
        return entry

    def delete(self, ids: Iterable[int]) -> None:
        """Forget entries the broker has acknowledged."""
        with self._lock:
            for entry_id in ids:
                if self._remove(entry_id):
                    self._forget_on_disk(entry_id)
        self._written_soon()

    def flush(self) -> None:
        """Write every pending change now, in one transaction."""
        with self._flush_lock:
            with self._lock:
                inserts, self._to_insert = list(self._to_insert.values()), {}
                deletes, self._to_delete = self._to_delete, []
                self._writing = len(inserts) + len(deletes)
            try:
                if self._file is not None and self._writing:
                    self._file.write(inserts, deletes)
                    self.commits += 1
            except sqlite3.Error as err:
                self._give_up(err, "cannot write to it")
            finally:
                self._writing = 0

    # ------------------------------------------------------------ reading
    def pending_after(self, after_id: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries with an id above ``after_id``, oldest first."""
        with self._lock:
            start = bisect.bisect_right(self._ids, after_id)
            return [self._entries[entry_id] for entry_id in self._ids[start:start + limit]]

    def is_newest(self, entry: Entry) -> bool:
        """True when no later entry for the same topic waits: only that one may be retained,
        so a replay of old changes never leaves an old state as the topic's retained value."""
        with self._lock:
            ids = self._by_topic.get(entry.topic)
            return not ids or ids[-1] <= entry.id

    def has_pending(self, topic: str) -> bool:
        with self._lock:
            return bool(self._by_topic.get(topic))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def evicted(self) -> int:
        return self.evicted_states + self.evicted_results

    @property
    def size(self) -> int:
        return self._bytes[True] + self._bytes[False]

    @property
    def durable(self) -> bool:
        """True while entries go to disk."""
        return self._file is not None

    def counters(self) -> dict[str, object]:
        with self._lock:
            return {"pending": len(self._entries), "bytes": self.size, "evicted": self.evicted,
                    "evicted_states": self.evicted_states, "evicted_results": self.evicted_results,
                    "refused_results": self.refused_results, "quarantined": self.quarantined,
                    "durable": self._file is not None, "commits": self.commits,
                    "unwritten": len(self._to_insert) + len(self._to_delete) + self._writing}

    # ------------------------------------------------------------ internals (lock held)
    def _add(self, entry: Entry) -> None:
        self._entries[entry.id] = entry
        if self._ids and self._ids[-1] > entry.id:
            bisect.insort(self._ids, entry.id)
        else:
            self._ids.append(entry.id)
        self._by_topic.setdefault(entry.topic, deque()).append(entry.id)
        self._by_kind[entry.retain][entry.id] = None
        self._bytes[entry.retain] += entry.size
        self._last_id = max(self._last_id, entry.id)

    def _remove(self, entry_id: int) -> bool:
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return False
        del self._ids[bisect.bisect_left(self._ids, entry_id)]
        ids = self._by_topic[entry.topic]
        if ids[0] == entry_id:
            ids.popleft()
        else:
            ids.remove(entry_id)
        if not ids:
            del self._by_topic[entry.topic]
        del self._by_kind[entry.retain][entry_id]
        self._bytes[entry.retain] -= entry.size
        return True

    def _forget_on_disk(self, entry_id: int) -> None:
        if self._to_insert.pop(entry_id, None) is None and self._file is not None:
            self._to_delete.append(entry_id)  # (never written: nothing to delete)

    def _make_room(self, size: int, state: bool) -> bool:
        """Evict until ``size`` more bytes fit: a result only older results, a state change
        results first, then older state changes. False: a result that does not fit."""
        if not state:
            while self._bytes[False] + size > self.result_bytes or self.size + size > self.max_bytes:
                if not self._evict_oldest(False):
                    return False
            return True
        while self._entries and self.size + size > self.max_bytes:
            if not self._evict_oldest(False):
                self._evict_oldest(True)
        return True

    def _evict_oldest(self, state: bool) -> bool:
        """Drop the oldest entry of one kind (counted and logged); False when there is none."""
        ids = self._by_kind[state]
        if not ids:
            return False
        oldest = next(iter(ids))
        self._remove(oldest)
        self._forget_on_disk(oldest)
        if state:
            self.evicted_states += 1
        else:
            self.evicted_results += 1
        count = self.evicted_states if state else self.evicted_results
        if count in (1, 10, 100) or count % 1000 == 0:
            if state:
                logger.warning("MQTT outbox full (%d bytes): dropped the oldest state change (%d dropped so far)",
                               self.max_bytes, count)
            else:
                logger.warning("MQTT outbox: on_change results use their share (%d bytes): dropped the oldest "
                               "result (%d dropped so far)", self.result_bytes, count)
        return True

    # ------------------------------------------------------------ internals (no lock)
    def _written_soon(self) -> None:
        if self._flusher is not None:
            self._flusher.wake()
        elif self.batch_delay_s <= 0:
            self.flush()

    def _give_up(self, err: BaseException, what: str) -> None:
        """One clear error, then memory only for the rest of this run (called under _flush_lock,
        or before the flusher starts)."""
        self.problem = f"{what}: {explain(self.path, err)}"
        logger.error("MQTT outbox %s: %s. State changes now wait in memory only (up to %d bytes) and are "
                     "lost if edgecam stops before the broker has them. Make the directory writable or set "
                     "mqtt.outbox.path.", self.path, self.problem, self.max_bytes)
        file, self._file = self._file, None
        with self._lock:
            self._to_insert, self._to_delete = {}, []
        if file is not None:
            try:
                file.close()
            except sqlite3.Error:
                pass


class _Flusher:
    """The thread that writes the outbox's changes: at most ``delay_s`` after the first
    unwritten change, everything unwritten by then, in one transaction."""

    def __init__(self, flush: Callable[[], None], delay_s: float) -> None:
        self._flush = flush
        self._delay_s = delay_s
        self._work = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgecam-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._work.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._work.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        flush = self._flush
        while not self._stop.is_set():
            self._work.wait()
            self._stop.wait(self._delay_s)  # gather what else comes within the delay
            self._work.clear()
            try:
                flush()
            except Exception:
                logger.exception("MQTT outbox: writing failed")
