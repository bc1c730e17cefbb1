"""The durable outbox on its own, with real SQLite files: order, ids across restarts,
what survives SIGKILL, eviction at the size limit, and the fallback to memory when the
file cannot be used (a second daemon holds it, not a database, a full disk)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgecam.publish.mqtt.outbox import Outbox, default_path

REPO = Path(__file__).resolve().parent.parent


def _payload(i: int, size: int = 0) -> bytes:
    body = json.dumps({"label": f"label-{i}", "since": f"2026-01-01T00:00:{i % 60:02d}.000Z"}).encode()
    return body + b" " * max(0, size - len(body))


def test_entries_come_back_in_order_after_a_restart_and_ids_never_repeat(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, 1_000_000).open()
    assert box.durable
    first = [box.append(f"t/{i % 2}", _payload(i), retain=i % 2 == 0, camera="cam", region=f"r{i}") for i in range(5)]
    box.delete([first[0].id, first[1].id])
    box.close()

    again = Outbox(path, 1_000_000).open()
    pending = again.pending_after(0, 100)
    assert [(e.id, e.topic, e.payload, e.retain, e.camera, e.region, e.created) for e in pending] == \
        [(e.id, e.topic, e.payload, e.retain, e.camera, e.region, e.created) for e in first[2:]]
    assert again.pending_after(first[2].id, 1) == [first[3]]
    again.delete(e.id for e in pending)
    assert len(again) == 0
    newer = again.append("t/0", _payload(9), retain=True)
    assert newer.id > first[-1].id  # AUTOINCREMENT: an emptied outbox does not start over at 1
    again.close()
    assert [e.id for e in Outbox(path, 1_000_000).open().pending_after(0, 10)] == [newer.id]


def test_only_the_newest_entry_of_a_topic_counts_as_newest(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 1_000_000).open()
    a1, b1, a2 = box.append("a", b"1", True), box.append("b", b"1", True), box.append("a", b"2", True)
    assert (box.is_newest(a1), box.is_newest(b1), box.is_newest(a2)) == (False, True, True)
    box.delete([a2.id])  # (acks come in order; this is the unusual case)
    assert box.is_newest(a1) and box.has_pending("a")
    box.delete([a1.id, b1.id])
    assert not box.has_pending("a") and not box.has_pending("b")


_WRITER = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, sys.argv[1])
    from edgecam.publish.mqtt.outbox import Outbox
    box = Outbox(__import__("pathlib").Path(sys.argv[2]), 1_000_000, batch_delay_s=float(sys.argv[4])).open()
    for i in range(int(sys.argv[3])):
        box.append("edgecam/dev/cam/door/state", b'{"n": %d}' % i, True)
    time.sleep(float(sys.argv[5]))
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit: as a crash or a power cut leaves it
""")


@pytest.mark.parametrize("delay_s, wait_s", [(0.0, 0.0), (0.05, 1.0)])
def test_what_was_appended_survives_sigkill(tmp_path: Path, delay_s: float, wait_s: float) -> None:
    """Written at once (batch_delay_s 0), or within the batch delay (50 ms; the kill comes 1 s later)."""
    path = tmp_path / "o.sqlite3"
    proc = subprocess.run([sys.executable, "-c", _WRITER, str(REPO), str(path), "25", str(delay_s), str(wait_s)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -9 and proc.stdout.strip() == "written", proc.stderr
    assert (tmp_path / "o.sqlite3-wal").exists()  # committed in the WAL, not yet checkpointed
    pending = Outbox(path, 1_000_000).open().pending_after(0, 100)
    assert [e.payload for e in pending] == [b'{"n": %d}' % i for i in range(25)]


def test_full_outbox_evicts_the_oldest_counts_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgecam")
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, 65_536).open()
    topic = "edgecam/dev/cam/door/state"
    entries = [box.append(topic, _payload(i, 1000), True) for i in range(100)]
    per_entry = entries[0].size
    kept = 65_536 // per_entry
    counters = box.counters()
    assert {key: counters[key] for key in ("pending", "bytes", "evicted", "evicted_states", "durable")} == \
        {"pending": kept, "bytes": kept * per_entry, "evicted": 100 - kept, "evicted_states": 100 - kept,
         "durable": True}
    assert [e.id for e in box.pending_after(0, 1000)] == [e.id for e in entries[-kept:]]
    warnings = [r.getMessage() for r in caplog.records if "outbox full" in r.getMessage()]
    assert warnings[0] == "MQTT outbox full (65536 bytes): dropped the oldest state change (1 dropped so far)"
    assert len(warnings) == 2  # the 1st and the 10th, not one line per eviction
    box.close()
    # The file holds what memory holds; a smaller limit at the next start evicts at once.
    smaller = Outbox(path, 65_536 // 2).open()
    assert [e.id for e in smaller.pending_after(0, 1000)] == [e.id for e in entries[-(32_768 // per_entry):]]
    assert smaller.evicted == kept - 32_768 // per_entry


def test_a_second_daemon_on_the_same_file_gets_one_clear_error_and_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="edgecam")
    path = tmp_path / "o.sqlite3"
    first = Outbox(path, 1_000_000).open()
    first.append("a", b"1", True)
    second = Outbox(path, 1_000_000).open()
    assert first.durable and not second.durable
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1 and "is another edgecam using this file?" in errors[0], errors
    assert "State changes now wait in memory only" in errors[0] and "mqtt.outbox.path" in errors[0]
    entry = second.append("b", b"2", True)  # still works, in memory
    assert second.pending_after(0, 10) == [entry] and len(caplog.records) == 1


def test_a_file_that_is_not_an_outbox_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="edgecam")
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"my holiday photos " * 100)
    box = Outbox(path, 1_000_000).open()
    assert not box.durable and "file is not a database" in caplog.records[0].getMessage()
    assert path.read_bytes() == b"my holiday photos " * 100


def test_default_path_follows_systemd_then_xdg(tmp_path: Path) -> None:
    assert default_path("cam1", {"STATE_DIRECTORY": "/var/lib/edgecam:/other"}) == \
        Path("/var/lib/edgecam/outbox-cam1.sqlite3")
    assert default_path("cam1", {"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "edgecam" / "outbox-cam1.sqlite3"
    assert default_path("cam1", {}) == Path.home() / ".local/state/edgecam/outbox-cam1.sqlite3"


_FILL = textwrap.dedent("""
    import logging, sys
    sys.path.insert(0, sys.argv[1])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from pathlib import Path
    from edgecam.publish.mqtt.outbox import Outbox
    box = Outbox(Path(sys.argv[2]) / "o.sqlite3", 50_000_000).open()
    assert box.durable
    for i in range(400):
        box.append("t", bytes(2000), True)
    box.flush()
    box.delete([e.id for e in box.pending_after(0, 10)])
    print(len(box), box.durable, box.pending_after(0, 1)[0].id, flush=True)
""")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="a small tmpfs needs root and unshare (CI runs as root)")
def test_a_full_disk_is_one_error_and_nothing_is_lost_from_memory(tmp_path: Path) -> None:
    """A real ENOSPC: a 256 KiB tmpfs in a private mount namespace, filled by 800 KB of entries."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f'mount -t tmpfs -o size=256k tmpfs "{disk}" && exec "$@"'
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           sys.executable, "-c", _FILL, str(REPO), str(disk)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    count, durable, first_id = proc.stdout.split()
    assert (count, durable, first_id) == ("390", "False", "11")  # every entry kept, in memory
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "database or disk is full" in errors[0], proc.stderr
