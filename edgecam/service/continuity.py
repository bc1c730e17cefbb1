"""What the daemon tells the MQTT sink about what runs, and what it gets back at a start.

``region_models``: per ``camera/region`` its model's labels and name (Home Assistant's
discovery: enum options, each camera device's model). ``restore_region_states``: each
region's state from before the restart (the sink's region memory), given back to its
debouncer and republished with its original ``since`` and ``previous``, where its model
still has that label. Both run off the inference thread's turn: at the start, before
inference runs, and after a change has been applied.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from edgecam.inference.layout import Layout
from edgecam.regions.debounce import RegionState

log = logging.getLogger(__name__)


def region_models(layout: Layout) -> tuple[dict[str, list[str]], dict[str, str]]:
    labels: dict[str, list[str]] = {}
    models: dict[str, str] = {}
    for region in layout.regions():
        info = layout.classifier(region.model_path).info
        labels[f"{region.camera}/{region.name}"] = list(info.labels)
        models[f"{region.camera}/{region.name}"] = info.name
    return labels, models


def restore_region_states(saved: dict[str, dict[str, Any]], layout: Layout,
                          submit: Callable[[dict[str, Any]], None]) -> int:
    """Before inference starts. Returns how many regions got their state back."""
    restored = 0
    for region in layout.regions():
        payload = saved.get(f"{region.camera}/{region.name}")
        state = RegionState.from_payload(payload) if payload is not None else None
        if state is None or state.label not in layout.classifier(region.model_path).info.labels:
            continue
        region.debouncer.state = state
        out = state.to_payload(layout.config.device_id, region.camera, region.name)
        submit(out)
        restored += 1
        log.info("state: %s/%s %s since %s (kept from before the restart)", region.camera, region.name,
                 state.label, out["since"])
    return restored
