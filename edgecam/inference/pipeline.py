"""The one owner of what runs: cameras, regions, models and the pause flags.

``layout`` is the running value (an immutable ``Layout``) that any thread may
read. Only ``update`` changes it: the change runs on the inference thread between
two turns (``ChangeQueue``), so a frame is never classified half-way through a
change, and changes land in the order they were asked for. A change is a function
of the running layout that returns the new one and a reply; one that raises
changes nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, TypeVar

from edgecam.config import Config
from edgecam.inference.changes import ChangeQueue
from edgecam.inference.layout import Layout
from edgecam.inference.plan import CameraFactory, Plan, apply_plan, make_plan
from edgecam.inference.pool import ModelLoader

T = TypeVar("T")

#: A change: the running layout -> (the new layout, the caller's reply).
Change = Callable[[Layout], "tuple[Layout, T]"]


#: How many applied changes the journal keeps.
JOURNAL_SIZE = 64


@dataclass(frozen=True)
class Applied:
    """One change that landed: the generation it made, what it was, and its details."""

    generation: int
    what: str  # "pause", "resume", "set", "upload", "config", ...
    detail: Mapping[str, Any]


class Pipeline:
    def __init__(self, config: Config, loader: ModelLoader, factory: CameraFactory) -> None:
        self.changes = ChangeQueue()
        self.loader = loader
        self.factory = factory
        self._layout = Layout(config, {}, {})
        #: The changes applied, oldest first (appended on the owner thread only).
        self.journal: deque[Applied] = deque(maxlen=JOURNAL_SIZE)

    @property
    def layout(self) -> Layout:
        return self._layout

    def update(self, change: "Change[T]", what: str, timeout_s: Optional[float] = None, **detail: Any) -> T:
        """Apply ``change`` on the owner thread; its reply. ``what`` and ``detail`` go to the journal."""
        return self.changes.call(lambda: self._swap(change, what, detail), timeout_s)

    def update_here(self, change: "Change[T]", what: str, **detail: Any) -> T:
        """For the owner thread itself (the inference thread rolling a model back)."""
        return self._swap(change, what, detail)

    def _swap(self, change: "Change[T]", what: str, detail: Mapping[str, Any]) -> T:
        new, reply = change(self._layout)
        if new.generation != self._layout.generation:
            self.journal.append(Applied(new.generation, what, detail))
        self._layout = new
        return reply

    # -- configurations ---------------------------------------------------------------
    def plan(self, config: Config, disable_failing: bool = False) -> Plan:
        """Prepare ``config`` (on the caller's thread): see ``make_plan``."""
        return make_plan(self._layout, config, self.loader, self.factory, disable_failing)

    def apply(self, plan: Plan) -> Layout:
        """Swap a prepared plan in; the cameras it retired are in ``plan.retired``."""
        def change(layout: Layout) -> tuple[Layout, Layout]:
            new = apply_plan(layout, plan)
            return new, new

        layout = self.update(change, "config", config=plan.config, changes=tuple(plan.changes))
        if plan.loader is not None:
            self.loader = plan.loader
        return layout
