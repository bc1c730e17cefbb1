"""A region's model faults: failures stay in the region that has them.

When a region's model fails on a frame (onnxruntime raises, or its outputs are
not finite or not the expected shape), the region counts it and the camera's
other regions, and the other cameras, go on. After ``rollback_after`` failures
in a row a region that was just given a new model goes back to the previous one
(the region keeps it loaded while the new one is on probation); a region with nothing to
go back to is in ``error`` and is tried again every ``RETRY_S``. Owned by the
inference thread, like the Region; others read ``failing`` and the counters.
"""

from __future__ import annotations

from typing import Any, Optional

#: A failing region with no model to go back to is tried again this often (s).
RETRY_S = 30.0
#: Results in a row a new model must give before it leaves probation (and its predecessor is freed).
PROBATION_RESULTS = 20


class Faults:
    def __init__(self) -> None:
        self.errors = 0  # frames this region's model failed on, in all
        self.in_a_row = 0
        self.failing: Optional[str] = None  # the last error while it keeps failing; None when it works
        self.retry_at = 0.0  # monotonic time before which a region in error is not tried again
        self.previous_model: Optional[str] = None  # the file a new model replaced, while on probation
        self.previous_loaded: Any = None  # ...and its loaded model (inference.pool.LoadedModel), kept for a rollback
        self.probation = 0  # results still needed before the new model counts as good
        self.rollbacks = 0

    @property
    def on_probation(self) -> bool:
        return self.previous_model is not None and self.probation > 0

    def start_probation(self, previous_model: str, previous_loaded: Any) -> None:
        """A new model: until it has given PROBATION_RESULTS results, failures roll it back."""
        self.previous_model, self.previous_loaded = previous_model, previous_loaded
        self.probation = PROBATION_RESULTS
        self.in_a_row = 0
        self.failing = None

    def succeeded(self) -> bool:
        """One good result. Returns True when this ends the probation."""
        self.in_a_row = 0
        self.failing = None
        if self.probation > 0:
            self.probation -= 1
            if self.probation == 0:
                self.previous_model, self.previous_loaded = None, None  # freed: the new model is trusted
                return True
        return False

    def failed(self, error: str, now: float, retry_s: float = RETRY_S) -> None:
        self.errors += 1
        self.in_a_row += 1
        self.failing = error
        self.retry_at = now + retry_s

    def due(self, now: float, rollback_after: int) -> bool:
        """False while a region in error waits for its next try."""
        return self.in_a_row < rollback_after or self.on_probation or now >= self.retry_at

    def rolled_back(self) -> tuple[str, Any]:
        """Back on the previous model: returns its file and loaded model; the probation is over."""
        assert self.previous_model is not None
        previous = (self.previous_model, self.previous_loaded)
        self.previous_model, self.previous_loaded, self.probation = None, None, 0
        self.rollbacks += 1
        self.in_a_row = 0
        return previous
