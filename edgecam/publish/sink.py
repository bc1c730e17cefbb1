"""The Sink interface: where published results and stats go (stdout, MQTT)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from edgecam.result import Result


class Sink(ABC):
    """A destination for results. Called only from the publisher thread.

    ``publish_result`` must not block for long: a sink with its own network
    I/O (MQTT) queues internally and drops oldest-first when its bound is hit.
    Results marked ``durable`` (admitted by on_change) and region states are
    state changes: the MQTT sink keeps them in its on-disk outbox until the
    broker acknowledges them, instead of that queue.
    """

    name: str = "sink"

    def start(self) -> None:
        """Connect / open. Must not raise when a remote end is down: retry later."""

    @abstractmethod
    def publish_result(self, result: Result) -> None:
        """Deliver one result (already stamped with ``handed_mono``)."""

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """Deliver one periodic stats snapshot (same dict the log line shows)."""

    def publish_state(self, state: dict[str, Any]) -> None:
        """Deliver the retained device state (source connected, model, paused...)."""

    def publish_region_state(self, state: dict[str, Any]) -> None:
        """Deliver one region's new debounced state (RegionState.to_payload()); retained
        where the transport has that notion, and re-sent after every reconnect."""

    def problem(self) -> str | None:
        """Why this sink cannot deliver right now (e.g. its reader stopped reading), or None.
        Must return at once: the daemon's health check calls it."""
        return None

    def stop(self) -> None:
        """Flush what can be flushed quickly and disconnect cleanly."""
