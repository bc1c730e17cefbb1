"""Publish policies: which results reach the sinks.

The publisher thread calls ``policy.admit(result, now_mono)`` for every result
and hands only what it returns to the sinks. When settings change at runtime
(``set`` command), it builds a new policy with ``make_policy`` and swaps it in.

Before any policy decides, a Top-1 below ``min_score`` is relabelled
``unknown`` (index -1, score kept), so low-confidence flicker between random
labels reads as one stable "unknown" to ``on_change``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod

from edgecam.config import PublishConfig
from edgecam.model.types import Label
from edgecam.result import Result

UNKNOWN_LABEL = "unknown"
UNKNOWN_INDEX = -1


def apply_min_score(result: Result, min_score: float) -> Result:
    """Relabel Top-1 as ``unknown`` when its score is below ``min_score``."""
    if not result.top or min_score <= 0 or result.top[0].score >= min_score:
        return result
    first = result.top[0]
    return result.with_top((Label(UNKNOWN_LABEL, UNKNOWN_INDEX, first.score),) + result.top[1:])


class PublishPolicy(ABC):
    """Decides, result by result, what to publish. Not thread-safe: one caller."""

    name: str = "policy"
    # What this policy admits are state changes, kept until the broker has them (the MQTT
    # outbox), rather than a stream where a lost or late message is soon superseded.
    durable: bool = False

    def __init__(self, cfg: PublishConfig) -> None:
        self.min_score = cfg.min_score

    def admit(self, result: Result, now_mono: float) -> Result | None:
        """The result to publish (maybe relabelled, marked durable), or None to suppress it."""
        result = apply_min_score(result, self.min_score)
        if not self._decide(result, now_mono):
            return None
        return dataclasses.replace(result, durable=True) if self.durable else result

    @abstractmethod
    def _decide(self, result: Result, now_mono: float) -> bool: ...


class EveryPolicy(PublishPolicy):
    name = "every"

    def _decide(self, result: Result, now_mono: float) -> bool:
        return True


class OnChangePolicy(PublishPolicy):
    """Publish when Top-1's label changes or its score moves by more than
    ``change_delta`` against the last *published* result, and at least every
    ``heartbeat_s`` seconds so subscribers know the device is still alive."""

    name = "on_change"
    # Heartbeats too: sent through the same ordered outbox, an old heartbeat can never
    # arrive after a newer change and look like the label changing back.
    durable = True

    def __init__(self, cfg: PublishConfig) -> None:
        super().__init__(cfg)
        self.change_delta = cfg.change_delta
        self.heartbeat_s = cfg.heartbeat_s
        self._last: Label | None = None
        self._last_mono = 0.0

    def _decide(self, result: Result, now_mono: float) -> bool:
        top1 = result.top[0] if result.top else None
        if self._last is not None and not self._changed(top1) and now_mono - self._last_mono < self.heartbeat_s:
            return False
        self._last = top1 if top1 is not None else Label("", UNKNOWN_INDEX, 0.0)
        self._last_mono = now_mono
        return True

    def _changed(self, top1: Label | None) -> bool:
        assert self._last is not None
        if top1 is None:
            return self._last.label != ""
        return top1.label != self._last.label or abs(top1.score - self._last.score) > self.change_delta


class IntervalPolicy(PublishPolicy):
    """At most ``interval_hz`` messages per second: a result passes when at
    least one period has elapsed since the last one that passed."""

    name = "interval"

    def __init__(self, cfg: PublishConfig) -> None:
        super().__init__(cfg)
        self.period_s = 1.0 / cfg.interval_hz
        self._last_mono: float | None = None

    def _decide(self, result: Result, now_mono: float) -> bool:
        if self._last_mono is not None and now_mono - self._last_mono < self.period_s:
            return False
        self._last_mono = now_mono
        return True


_POLICIES: dict[str, type[PublishPolicy]] = {
    "every": EveryPolicy,
    "on_change": OnChangePolicy,
    "interval": IntervalPolicy,
}


def make_policy(cfg: PublishConfig) -> PublishPolicy:
    """Build the policy named by ``cfg.policy`` with its parameters."""
    return _POLICIES[cfg.policy](cfg)
