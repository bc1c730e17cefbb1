"""edgecam/bench/http.py's run_load, imported as the reliability harness will
import it, against a real preview server: it counts 200s, 503s and errors apart."""

from __future__ import annotations

import time

import cv2

from tests.support.web_control import chelsea_bgr


def test_run_load_counts_answers_by_kind(start_preview) -> None:
    from edgecam.bench import http as bench

    srv = start_preview(workers=1, max_streams=1, max_connections=2)
    jpeg = cv2.imencode(".jpg", chelsea_bgr())[1].tobytes()
    result = bench.run_load("127.0.0.1", srv.port, clients=4, seconds=1.0, body=jpeg)
    assert result.ok > 0 and result.error_count == 0, result.errors
    assert len(result.latencies_ms) == result.ok and 0 < result.percentile(50) <= result.percentile(99)
    assert srv.control.classified[0] == (300, 451, 3)

    idle = [srv.connect() for _ in range(2)]  # hold both connections: everything else gets 503
    try:
        deadline = time.monotonic() + 5
        while srv.preview.open_connections < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = bench.run_load("127.0.0.1", srv.port, clients=2, seconds=0.5, body=jpeg, honor_retry_after=False)
    finally:
        for sock in idle:
            sock.close()
    assert busy.ok == 0 and busy.busy > 0 and busy.error_count == 0, (busy.busy, busy.errors)
    deadline = time.monotonic() + 5
    while srv.preview.open_connections > 0 and time.monotonic() < deadline:
        time.sleep(0.02)

    wrong = bench.run_load("127.0.0.1", srv.port, clients=1, seconds=0.3, body=jpeg, content_type="text/plain")
    assert wrong.ok == 0 and set(wrong.errors) == {"HTTP 415"}
