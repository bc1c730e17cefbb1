"""Debouncing: a region's state changes only after ``confirm`` results in a row agree.

Frigate's rule, made explicit: N consecutive results whose top-1 is the same
label with a score of at least ``min_score``. A result below ``min_score``
breaks the streak (it is not "the same top-1 above min_score"). The first
confirmed label is a change too (from no state).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from edgecam.model.types import Label
from edgecam.result import iso_utc_ms


@dataclass(frozen=True)
class RegionState:
    """The debounced state of one region, as published (retained) on its state topic."""

    label: str
    index: int
    score: float  # the score of the result that confirmed it
    since_wall: float  # time.time() of that result's frame
    top: tuple[Label, ...]
    previous: Optional[str] = None

    def to_payload(self, device: str, camera: str, region: str) -> dict[str, Any]:
        """The retained JSON on ``<prefix>/<camera>/<region>/state``."""
        return {
            "device": device, "camera": camera, "region": region,
            "label": self.label, "index": self.index, "score": round(self.score, 5),
            "since": iso_utc_ms(self.since_wall), "previous": self.previous,
            "top": [{"label": t.label, "index": t.index, "score": round(float(t.score), 5)} for t in self.top],
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Optional["RegionState"]:
        """The state ``to_payload`` wrote (kept across a restart), or None when it is not one."""
        try:
            since = datetime.strptime(payload["since"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
            top = tuple(Label(str(t["label"]), int(t["index"]), float(t["score"])) for t in payload["top"])
            previous = payload.get("previous")
            return cls(str(payload["label"]), int(payload["index"]), float(payload["score"]), since.timestamp(),
                       top, None if previous is None else str(previous))
        except (KeyError, TypeError, ValueError):
            return None


class Debouncer:
    def __init__(self, confirm: int, min_score: float) -> None:
        self.confirm = confirm
        self.min_score = min_score
        self.state: Optional[RegionState] = None
        self._candidate: Optional[str] = None
        self._streak = 0

    def reset(self) -> None:
        """Forget the state (a new model): the next confirmed label is a change again."""
        self.state, self._candidate, self._streak = None, None, 0

    def retune(self, confirm: int, min_score: float) -> None:
        self.confirm, self.min_score = confirm, min_score

    def update(self, top: tuple[Label, ...], captured_wall: float) -> Optional[RegionState]:
        """Feed one result; returns the new state when this result changes it."""
        if not top or top[0].score < self.min_score:
            self._candidate, self._streak = None, 0
            return None
        first = top[0]
        if first.label == self._candidate:
            self._streak += 1
        else:
            self._candidate, self._streak = first.label, 1
        if self._streak < self.confirm or (self.state is not None and self.state.label == first.label):
            return None
        previous = self.state.label if self.state is not None else None
        self.state = RegionState(first.label, first.index, float(first.score), captured_wall, tuple(top), previous)
        return self.state
