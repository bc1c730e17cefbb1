"""The outbox keeps state changes: a row that does not decode is set aside (never a crash),
on_change results cannot push state changes out, and writes are grouped (one transaction,
one fsync, per batch)."""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from edgecam.publish.mqtt.outbox import Outbox

STATE = "edgecam/dev/garage/door/state"
RESULT = "edgecam/dev/garage/door/result"


def sql(path: Path, query: str, *args: Any) -> list[tuple]:
    """One statement on its own connection, committed and closed (the outbox locks the file)."""
    with closing(sqlite3.connect(path)) as db, db:
        return db.execute(query, args).fetchall()


def flip_payload_type(path: Path, payload: bytes, topic: str, camera: str, region: str) -> None:
    """Flip ONE bit on disk: the serial type of ``payload``'s column in its record header, from
    BLOB (2n+12) to TEXT (2n+13). The record body is created (8 bytes), topic, camera, region,
    payload, right after the header, whose last byte is the payload's serial type."""
    data = bytearray(path.read_bytes())
    body = data.index(topic.encode() + camera.encode() + region.encode() + payload) - 8
    header_last = body - 1
    assert data[header_last] == 2 * len(payload) + 12, "not the record layout this test expects"
    data[header_last] ^= 1
    path.write_bytes(bytes(data))


def test_a_row_with_a_flipped_bit_is_set_aside_and_the_rest_loads(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="edgecam")
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, 1_000_000).open()
    entries = [box.append(STATE, b'{"label": "state-%d"}' % i, True, "garage", "door") for i in range(3)]
    box.close()  # checkpoints the WAL into the file
    flip_payload_type(path, entries[1].payload, STATE, "garage", "door")
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]  # SQLite sees nothing wrong
    assert sql(path, "SELECT typeof(payload) FROM outbox WHERE id = ?", entries[1].id) == [("text",)]

    again = Outbox(path, 1_000_000).open()  # today: TypeError, and `edgecam run` crashes at every start
    assert [e.payload for e in again.pending_after(0, 10)] == [entries[0].payload, entries[2].payload]
    assert again.durable and again.counters()["quarantined"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"id {entries[1].id}: payload is text, not blob" in warnings[0]
    assert "outbox_quarantine" in warnings[0] and "The other 2 wait" in warnings[0]
    later = again.append(STATE, b'{"label": "later"}', True, "garage", "door")
    again.close()
    kept = sql(path, "SELECT id, CAST(payload AS BLOB), typeof(payload), reason FROM outbox_quarantine")  # as found
    assert kept == [(entries[1].id, entries[1].payload, "text", "payload is text, not blob")]
    third = Outbox(path, 1_000_000).open()  # set aside once, not again at every start
    assert [e.id for e in third.pending_after(0, 10)] == [entries[0].id, entries[2].id, later.id]
    assert third.counters()["quarantined"] == 0 and later.id > entries[2].id


@pytest.mark.parametrize("column, value, problem", [
    ("topic", b"\xff\xfe", "topic is blob, not text"),
    ("retain", 7, "retain is 7, not 0 or 1"),
    ("created", "yesterday", "created is text, not real or integer"),
])
def test_other_rows_that_do_not_decode_are_set_aside_too(tmp_path: Path, column: str, value: object,
                                                          problem: str) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, 1_000_000).open()
    good, bad = box.append(STATE, b"1", True), box.append(STATE, b"2", True)
    box.close()
    sql(path, f"UPDATE outbox SET {column} = ? WHERE id = ?", value, bad.id)
    again = Outbox(path, 1_000_000).open()
    assert [e.id for e in again.pending_after(0, 10)] == [good.id]
    again.close()
    assert sql(path, "SELECT id, reason FROM outbox_quarantine") == [(bad.id, problem)]


def test_results_cannot_push_state_changes_out(tmp_path: Path) -> None:
    """During an outage on_change results filled the outbox and evicted the state changes."""
    box = Outbox(tmp_path / "o.sqlite3", 65_536, result_share=0.25).open()
    states = [box.append(STATE, b'{"label": "s%d"}' % i + b" " * 400, True) for i in range(40)]  # ~17 KB
    for i in range(2000):  # ~1 MB of results: an hour of an outage, compressed
        box.append(RESULT, b'{"seq": %d}' % i + b" " * 500, False)
    counters = box.counters()
    assert counters["evicted_states"] == 0 and counters["evicted_results"] > 1900
    pending = box.pending_after(0, 10_000)
    assert [e.id for e in pending if e.retain] == [s.id for s in states if s is not None]
    assert sum(e.size for e in pending if not e.retain) <= 65_536 * 0.25
    # State changes may use the whole outbox: they push results out first, then older states.
    for i in range(200):
        box.append(STATE, b'{"label": "t%d"}' % i + b" " * 400, True)
    assert not [e for e in box.pending_after(0, 10_000) if not e.retain]
    assert box.counters()["evicted_states"] > 0 and box.size <= 65_536
    # And with state changes filling it, a result is not kept (it would have to evict one).
    assert box.append(RESULT, b"{}", False) is None and box.counters()["refused_results"] == 1
    box.close()


def test_writes_are_grouped_one_transaction_per_batch(tmp_path: Path) -> None:
    grouped = Outbox(tmp_path / "grouped.sqlite3", 10_000_000).open()
    direct = Outbox(tmp_path / "direct.sqlite3", 10_000_000, batch_delay_s=0).open()
    for box in (grouped, direct):
        for i in range(200):
            box.append(RESULT, b'{"seq": %d}' % i, False)
    deadline = time.monotonic() + 10
    while grouped.counters()["unwritten"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert grouped.counters()["unwritten"] == 0  # on disk within the delay
    assert direct.counters()["commits"] == 200  # one transaction (one fsync) per entry
    assert grouped.counters()["commits"] < 20, grouped.counters()
    ids = [e.id for e in grouped.pending_after(0, 1000)]
    grouped.delete(ids[:150])
    grouped.close()
    direct.close()
    assert [e.id for e in Outbox(tmp_path / "grouped.sqlite3", 10_000_000).open().pending_after(0, 1000)] == ids[150:]


def test_an_entry_acknowledged_before_it_was_written_never_reaches_the_disk(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 1_000_000, batch_delay_s=5.0).open()
    entry = box.append(STATE, b"1", True)
    assert entry is not None
    box.delete([entry.id])
    box.flush()
    assert box.counters()["commits"] == 0 and len(box) == 0
    box.close()


def test_the_outbox_benchmark_compares_both_modes() -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "edgecam.bench.outbox", "--repeats", "1", "--burst", "100",
                           "--rate", "50", "--seconds", "0.5"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in proc.stdout.splitlines() if line.startswith("| ") and "mode" not in line}
    assert set(rows) == {"per entry (before)", "grouped, 50 ms (after)"}
    assert rows["per entry (before)"][2] == "100"  # one transaction per entry
    assert int(rows["grouped, 50 ms (after)"][2]) < 20
    assert "host: " in proc.stdout
