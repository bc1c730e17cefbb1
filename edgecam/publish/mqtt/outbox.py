"""The durable outbox: state changes waiting for the broker, in order, on disk.

Every region state change and every result the on_change policy admits is
written here before it is sent, and deleted only once the broker has
acknowledged it (QoS 1 PUBACK, see ``mqtt/pump.py``). The file is SQLite
(standard library) in WAL mode with ``synchronous=FULL``: each write is on
disk before ``append`` returns, so an entry survives ``kill -9`` and a power
cut. Ids only grow (AUTOINCREMENT), so "in order" holds across restarts.

All pending entries are mirrored in memory (they are bounded by
``max_bytes``): reads never touch the disk, and when the disk fails (read-only
directory, disk full, a second daemon holding the file) the outbox logs ONE
error and carries on from memory, which is what edgecam did before it had an
outbox. Rows the disk could not forget then may be delivered again at the next
start: QoS 1 is at-least-once anyway.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    topic TEXT NOT NULL,
    retain INTEGER NOT NULL,
    camera TEXT NOT NULL,
    region TEXT NOT NULL,
    payload BLOB NOT NULL)"""


def default_path(device_id: str, environ: Optional[dict[str, str]] = None) -> Path:
    """``$STATE_DIRECTORY`` (systemd's StateDirectory=), else the XDG state directory."""
    env = os.environ if environ is None else environ
    state_dirs = env.get("STATE_DIRECTORY", "")
    if state_dirs:
        base = Path(state_dirs.split(":")[0])
    else:
        xdg = env.get("XDG_STATE_HOME", "")
        base = (Path(xdg) if xdg else Path.home() / ".local" / "state") / "edgecam"
    return base / f"outbox-{device_id}.sqlite3"


@dataclass(frozen=True)
class Entry:
    """One message waiting for the broker's acknowledgement."""

    id: int
    topic: str
    payload: bytes
    retain: bool
    camera: str
    region: str
    created: float  # time.time() when it was written

    @property
    def size(self) -> int:
        return len(self.topic.encode("utf-8")) + len(self.payload)


class Outbox:
    """Pending entries in id order; on disk when it can be, always mirrored in memory.

    Thread-safe: the publisher thread appends, the MQTT worker reads and deletes."""

    def __init__(self, path: Optional[Path], max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.evicted = 0
        self.problem: Optional[str] = None if path is not None else "disabled in the config"
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._ids: list[int] = []  # the same ids, sorted: pending_after() bisects instead of scanning
        self._by_topic: dict[str, deque[int]] = {}
        self._bytes = 0
        self._last_id = 0
        self._db: Optional[sqlite3.Connection] = None

    # ------------------------------------------------------------ lifecycle
    def open(self) -> "Outbox":
        """Open (or create) the file and load what a previous run left. Never raises:
        a file that cannot be used is one error in the log, then memory only."""
        if self.path is None:
            logger.info("MQTT outbox: off (mqtt.outbox.enabled: false); state changes wait in memory only")
            return self
        try:
            self._db = _connect(self.path)
            rows = self._db.execute("SELECT id, topic, payload, retain, camera, region, created "
                                    "FROM outbox ORDER BY id").fetchall()
            seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        except (sqlite3.Error, OSError) as err:
            self._give_up(err, "cannot open it")
            return self
        with self._lock:
            for row in rows:
                self._add(Entry(row[0], row[1], bytes(row[2]), bool(row[3]), row[4], row[5], row[6]))
            self._last_id = max(self._last_id, seq[0] if seq else 0)
            self._evict_for(0)
        if rows:
            logger.info("MQTT outbox %s: %d state change(s) from an earlier run wait for the broker",
                        self.path, len(rows))
        return self

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error as err:
                logger.warning("MQTT outbox %s: closing failed: %s", self.path, err)

    # ------------------------------------------------------------ writing
    def append(self, topic: str, payload: bytes, retain: bool, camera: str = "", region: str = "") -> Entry:
        """Store one entry (on disk before this returns, when the disk works)."""
        created = time.time()
        with self._lock:
            self._evict_for(len(topic.encode("utf-8")) + len(payload))
            entry_id = self._insert(topic, payload, retain, camera, region, created)
            entry = Entry(entry_id, topic, payload, retain, camera, region, created)
            self._add(entry)
            return entry

    def delete(self, ids: Iterable[int]) -> None:
        """Forget entries the broker has acknowledged."""
        with self._lock:
            gone = [entry_id for entry_id in ids if self._remove(entry_id)]
            self._delete_rows(gone)

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
    def durable(self) -> bool:
        """True while entries go to disk."""
        return self._db is not None

    def counters(self) -> dict[str, object]:
        with self._lock:
            return {"pending": len(self._entries), "bytes": self._bytes, "evicted": self.evicted,
                    "durable": self._db is not None}

    # ------------------------------------------------------------ internals (lock held)
    def _add(self, entry: Entry) -> None:
        self._entries[entry.id] = entry
        if self._ids and self._ids[-1] > entry.id:
            bisect.insort(self._ids, entry.id)
        else:
            self._ids.append(entry.id)
        self._by_topic.setdefault(entry.topic, deque()).append(entry.id)
        self._bytes += entry.size
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
        self._bytes -= entry.size
        return True

    def _evict_for(self, size: int) -> None:
        """Drop the oldest entries until ``size`` more bytes fit (counted and logged)."""
        gone = []
        while self._entries and self._bytes + size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            gone.append(oldest)
            self.evicted += 1
            if self.evicted in (1, 10, 100) or self.evicted % 1000 == 0:
                logger.warning("MQTT outbox full (%d bytes): dropped the oldest state change (%d dropped so far)",
                               self.max_bytes, self.evicted)
        self._delete_rows(gone)

    def _insert(self, topic: str, payload: bytes, retain: bool, camera: str, region: str, created: float) -> int:
        if self._db is not None:
            try:
                cursor = self._db.execute(
                    "INSERT INTO outbox (created, topic, retain, camera, region, payload) VALUES (?, ?, ?, ?, ?, ?)",
                    (created, topic, int(retain), camera, region, payload))
                return int(cursor.lastrowid or self._last_id + 1)
            except sqlite3.Error as err:
                self._give_up(err, "cannot write to it")
        return self._last_id + 1

    def _delete_rows(self, ids: list[int]) -> None:
        if self._db is None or not ids:
            return
        try:
            self._db.execute("BEGIN")  # one transaction: one fsync for the batch
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            self._give_up(err, "cannot delete from it")

    def _give_up(self, err: BaseException, what: str) -> None:
        """One clear error, then memory only for the rest of this run."""
        reason = _explain(self.path, err)
        self.problem = f"{what}: {reason}"
        logger.error("MQTT outbox %s: %s. State changes now wait in memory only (up to %d bytes) and are "
                     "lost if edgecam stops before the broker has them. Make the directory writable or set "
                     "mqtt.outbox.path.", self.path, self.problem, self.max_bytes)
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=0, isolation_level=None, check_same_thread=False)
    try:
        # EXCLUSIVE: a second daemon on the same file gets "database is locked" instead of
        # sending (and deleting) our entries; in WAL mode it also means no -shm file.
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal mode is {mode})")
        db.execute("PRAGMA synchronous = FULL")  # a committed entry survives a power cut
        db.execute("PRAGMA journal_size_limit = 1048576")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this edgecam ({SCHEMA_VERSION})")
        db.execute(_SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.close()
        raise
    return db


def _explain(path: Optional[Path], err: BaseException) -> str:
    """SQLite says "unable to open database file"; say why, from the directory itself."""
    text = str(err) or type(err).__name__
    if "locked" in text:
        return f"{text} (is another edgecam using this file?)"
    if path is None or not isinstance(err, sqlite3.OperationalError):
        return text
    probe = path.parent / f".edgecam-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as probe_err:
        if probe_err.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.ENOENT, errno.ENOTDIR):
            return f"{text}: directory {path.parent}: {probe_err.strerror}"
        return text
    os.close(fd)
    os.unlink(probe)
    return text
