"""The outbox's SQLite file: open it, read what a previous run left, write batches.

WAL mode with ``synchronous=FULL``: a committed batch survives ``kill -9`` and a
power cut, and costs one fsync. EXCLUSIVE locking: a second daemon on the same file
gets "database is locked" instead of sending (and deleting) our entries.

A row that does not decode (a column of the wrong type, text that is not UTF-8:
one flipped bit on disk does it, and ``PRAGMA integrity_check`` still says ok) is
moved, as it was found, to the table ``outbox_quarantine`` for inspection, and the
other rows load: one bad row never stops a start.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("edgecam.publish.mqtt.outbox")

SCHEMA_VERSION = 1
_SCHEMA = """CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    topic TEXT NOT NULL,
    retain INTEGER NOT NULL,
    camera TEXT NOT NULL,
    region TEXT NOT NULL,
    payload BLOB NOT NULL)"""
# No declared types: rows are kept exactly as they were found.
_QUARANTINE = """CREATE TABLE IF NOT EXISTS outbox_quarantine (
    id, created, topic, retain, camera, region, payload,
    reason TEXT NOT NULL,
    moved REAL NOT NULL)"""
QUARANTINE_TABLE = "outbox_quarantine"
_COLUMNS = ("created", "topic", "retain", "camera", "region", "payload")
_TYPES = {"created": ("real", "integer"), "topic": ("text",), "retain": ("integer",), "camera": ("text",),
          "region": ("text",), "payload": ("blob",)}


@dataclass(frozen=True)
class Entry:
    """One message waiting for the broker's acknowledgement. Retained entries are region
    state changes; the others are results the on_change policy admitted."""

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


class OutboxFile:
    """The SQLite file. Not thread-safe: the outbox serialises every call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = _connect(path)

    def load(self) -> tuple[list[Entry], int, int]:
        """(the entries in id order, the highest id ever used, how many rows were set aside)."""
        db = self._db
        db.text_factory = bytes  # decode text ourselves: a bad byte is one bad row, not a failed read
        try:
            rows = db.execute(f"SELECT id, {', '.join(_COLUMNS)}, {', '.join(f'typeof({c})' for c in _COLUMNS)} "
                              "FROM outbox ORDER BY id").fetchall()
            seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        finally:
            db.text_factory = str
        entries, bad = [], []
        for row in rows:
            entry, problem = _decode(row)
            if entry is not None:
                entries.append(entry)
            else:
                bad.append((row[0], problem))
        last = max([seq[0] if seq else 0, *(row[0] for row in rows)])
        if bad:
            self._quarantine(bad, len(entries))
        return entries, last, len(bad)

    def write(self, inserts: list[Entry], deletes: list[int]) -> None:
        """One transaction: one fsync for the whole batch."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO outbox (id, created, topic, retain, camera, region, payload) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(e.id, e.created, e.topic, int(e.retain), e.camera, e.region, e.payload) for e in inserts])
            db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in deletes])
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def close(self) -> None:
        self._db.close()

    def _quarantine(self, bad: list[tuple[int, str]], kept: int) -> None:
        first_id, first_problem = bad[0]
        where = f"moved to table {QUARANTINE_TABLE} in {self.path} for inspection"
        try:
            self._write_quarantine(bad)
        except sqlite3.Error as err:
            where = f"left where they are ({err}); they are skipped"
        logger.warning("MQTT outbox %s: %d entr%s could not be read (id %d: %s); %s. The other %d wait "
                       "for the broker.", self.path, len(bad), "y" if len(bad) == 1 else "ies", first_id,
                       first_problem, where, kept)

    def _write_quarantine(self, bad: list[tuple[int, str]]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute(_QUARANTINE)
            now = time.time()
            for row_id, problem in bad:
                db.execute(f"INSERT INTO {QUARANTINE_TABLE} SELECT id, {', '.join(_COLUMNS)}, ?, ? FROM outbox "
                           "WHERE id = ?", (problem, now, row_id))
                db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise


def _decode(row: tuple) -> tuple[Entry | None, str]:
    """An Entry from one row of ``load``'s query, or (None, what is wrong with it)."""
    values = dict(zip(_COLUMNS, row[1:7]))
    types = {column: bytes(kind).decode("ascii") for column, kind in zip(_COLUMNS, row[7:13])}  # (text_factory)
    for column, allowed in _TYPES.items():
        if types[column] not in allowed:
            return None, f"{column} is {types[column]}, not {' or '.join(allowed)}"
    texts = {}
    for column in ("topic", "camera", "region"):
        try:
            texts[column] = bytes(values[column]).decode("utf-8")
        except UnicodeDecodeError:
            return None, f"{column} is not UTF-8"
    if not texts["topic"] or "\0" in texts["topic"]:
        return None, "the topic is empty or holds a NUL"
    if values["retain"] not in (0, 1):
        return None, f"retain is {values['retain']}, not 0 or 1"
    return Entry(row[0], texts["topic"], bytes(values["payload"]), bool(values["retain"]), texts["camera"],
                 texts["region"], float(values["created"])), ""


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=0, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA locking_mode = EXCLUSIVE")  # in WAL mode this also means no -shm file
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal mode is {mode})")
        db.execute("PRAGMA synchronous = FULL")  # a committed batch survives a power cut
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


def explain(path: Path | None, err: BaseException) -> str:
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
