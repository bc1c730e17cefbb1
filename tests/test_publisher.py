"""The publisher thread's queue: results may be dropped when it overflows (counted),
region state changes never are, and on_change results come out marked durable."""

from __future__ import annotations

import threading

from edgecam.config import PublishConfig
from edgecam.publish.policy import make_policy
from edgecam.publish.publisher import PublisherThread
from edgecam.publish.sink import Sink
from tests.support.mqtt import make_result, wait_until


class GatedSink(Sink):
    """Holds the publisher thread inside publish_result until the gate opens."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.results: list = []
        self.states: list[dict] = []

    def publish_result(self, result) -> None:
        self.gate.wait(30)
        self.results.append(result)

    def publish_region_state(self, state: dict) -> None:
        self.states.append(state)


def test_a_full_queue_drops_results_never_state_changes() -> None:
    sink, stop = GatedSink(), threading.Event()
    publisher = PublisherThread(lambda: make_policy(PublishConfig()), queue_size=4, stop_event=stop)
    publisher.start([sink])
    try:
        publisher.submit(make_result(0))
        wait_until(lambda: publisher.queue_depth == 0, what="the thread holds result 0 in the sink")
        for seq in range(1, 21):
            publisher.submit(make_result(seq))
            if seq % 4 == 0:
                publisher.submit_region_state({"camera": "c", "region": "r", "n": seq})
        sink.gate.set()
        wait_until(lambda: publisher.queue_depth == 0 and len(sink.states) == 5, what="everything delivered")
    finally:
        stop.set()
        publisher.stop()
    assert [s["n"] for s in sink.states] == [4, 8, 12, 16, 20]  # every change, in order
    seqs = [r.seq for r in sink.results]
    assert seqs[0] == 0 and seqs[1:] == sorted(seqs[1:]) and len(seqs) < 21
    assert publisher.dropped == 21 - len(seqs)  # only results dropped, each counted once


def test_on_change_results_come_out_durable_and_the_others_not() -> None:
    for policy, durable in (("on_change", True), ("every", False), ("interval", False)):
        admitted = make_policy(PublishConfig(policy=policy)).admit(make_result(0), 0.0)
        assert admitted is not None and admitted.durable is durable, policy
