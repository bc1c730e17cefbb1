"""The publisher thread: a bounded queue between inference and the sinks.

Inference never waits for a sink: ``submit`` drops the oldest queued item when
the queue is full (counted in ``dropped``). Region state changes are never
dropped here: they wait in a queue of their own (debouncing keeps them rare),
which the thread empties first, on their way to the sinks' durable outboxes.
The thread applies the publish
policy, stamps each result with the moment it is handed to the sinks (the
``publish`` part of the latency breakdown) and calls every sink in turn.

On stop the thread itself delivers what is queued (for a bounded time) and
returns; nothing else ever calls into the sinks' publish methods, so a sink
stuck in a write can never block a second thread (the main thread at shutdown).
Sinks bound their own writes (``Sink.problem()`` reports a stall).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from edgecam.heartbeat import Heartbeat
from edgecam.publish.sink import Sink
from edgecam.result import Result

log = logging.getLogger(__name__)

_RESULT, _STATS, _STATE, _REGION_STATE, _WAKE = "result", "stats", "state", "region_state", "wake"
DRAIN_S = 0.3  # how long the thread keeps delivering queued items after a stop


class PublisherThread:
    def __init__(self, make_policy: Callable[[], Any], queue_size: int, stop_event: threading.Event,
                 on_published: Callable[[Result], None] | None = None) -> None:
        self.sinks: list[Sink] = []  # given to start(): the MQTT sink needs the daemon's control surface
        self._make_policy = make_policy
        # One policy per (camera, region): "on_change" means a change of that region's result.
        self._policies: dict[tuple[str, str], Any] = {}
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=queue_size)
        self._changes: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()  # region states: never dropped
        self._stop = stop_event
        self._on_published = on_published
        self._thread: threading.Thread | None = None
        self._counter_lock = threading.Lock()  # guards the counters below (submitters vs publisher)
        self.dropped = 0
        self.published = 0
        self.suppressed = 0
        self.heartbeat = Heartbeat("publisher")

    def start(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        for sink in self.sinks:
            sink.start()
        self.heartbeat.beat()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Wait (bounded) for the thread to deliver what is queued, then stop every sink."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("publisher: still busy in a sink after %.1f s; not waiting for it", timeout)
        for sink in self.sinks:
            try:
                sink.stop()
            except Exception:
                log.exception("sink %s failed to stop cleanly", sink.name)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() + self._changes.qsize()

    def submit(self, result: Result) -> None:
        self._put((_RESULT, result))

    def submit_stats(self, stats: dict[str, Any]) -> None:
        self._put((_STATS, stats))

    def submit_state(self, state: dict[str, Any]) -> None:
        self._put((_STATE, state))

    def submit_region_state(self, state: dict[str, Any]) -> None:
        self._changes.put(state)
        self._put((_WAKE, None))  # may push out the oldest result, never a change

    def set_policy_factory(self, make_policy: Callable[[], Any]) -> None:
        """New publish settings: every region starts over with a fresh policy."""
        self._make_policy = make_policy
        self._policies = {}  # one assignment: the publisher thread sees the old or the new dict

    def _put(self, item: tuple[str, Any]) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    kind, _ = self._queue.get_nowait()
                except queue.Empty:
                    continue
                if kind != _WAKE:
                    with self._counter_lock:
                        self.dropped += 1

    def problems(self) -> list[str]:
        """Why results are not getting out (a sink stalled...); empty when they are."""
        found = []
        for sink in self.sinks:
            problem = sink.problem()
            if problem:
                found.append(f"{sink.name}: {problem}")
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat.beat()
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._deliver(item)
        self._drain(deadline=time.monotonic() + DRAIN_S)

    def _drain(self, deadline: float) -> None:
        self._deliver_changes()
        while time.monotonic() < deadline:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._deliver(item)

    def _deliver_changes(self) -> None:
        while True:
            try:
                state = self._changes.get_nowait()
            except queue.Empty:
                return
            self._to_sinks(_REGION_STATE, state)

    def _deliver(self, item: tuple[str, Any]) -> None:
        self._deliver_changes()  # a change goes out before anything queued after it
        kind, payload = item
        if kind == _RESULT:
            self._deliver_result(payload)
        elif kind != _WAKE:
            self._to_sinks(kind, payload)

    def _to_sinks(self, kind: str, payload: Any) -> None:
        for sink in self.sinks:
            try:
                if kind == _STATS:
                    sink.publish_stats(payload)
                elif kind == _REGION_STATE:
                    sink.publish_region_state(payload)
                else:
                    sink.publish_state(payload)
            except Exception:
                log.exception("sink %s failed to publish %s", sink.name, kind)

    def _policy_for(self, result: Result) -> Any:
        policies = self._policies
        key = (result.camera, result.region)
        policy = policies.get(key)
        if policy is None:
            policy = policies[key] = self._make_policy()
        return policy

    def _deliver_result(self, result: Result) -> None:
        admitted = self._policy_for(result).admit(result, time.monotonic())
        if admitted is None:
            with self._counter_lock:
                self.suppressed += 1
            return
        handed = admitted.handed(time.monotonic())
        for sink in self.sinks:
            try:
                sink.publish_result(handed)
            except Exception:
                log.exception("sink %s failed to publish a result", sink.name)
        with self._counter_lock:
            self.published += 1
        if self._on_published is not None:
            self._on_published(handed)
