"""What runs, as one immutable value: the cameras, their regions and preview hubs, the models.

The inference thread owns it (``Pipeline``) and replaces it as a whole when a
change lands; any other thread reads ``pipeline.layout`` once and works on that
value, so it never sees half a change. The objects inside have owners of their
own: a Camera's capture thread fills its ring, a Region's counters and debounced
state belong to the inference thread, a PreviewHub locks itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Optional

from edgecam.config import Config
from edgecam.errors import ConfigError
from edgecam.inference.pool import LoadedModel, model_key
from edgecam.model.classifier import Classifier
from edgecam.preview.hub import PreviewHub
from edgecam.regions.region import Region
from edgecam.sources.camera import Camera


@dataclass(frozen=True)
class CameraRun:
    """One camera as it runs: its source and ring, its regions in config order, its hub."""

    camera: Camera
    regions: tuple[Region, ...]
    hub: PreviewHub
    paused: bool = False

    @property
    def name(self) -> str:
        return self.camera.name

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        names = ", ".join(r.name for r in self.regions)
        raise ConfigError(f"camera {self.name} has no region named {name!r} (regions: {names})")


@dataclass(frozen=True)
class Layout:
    """``config`` is the running configuration: the last one loaded, with the daemon-wide
    runtime settings (``set``) applied. A region's own settings live in ``Region.cfg``."""

    config: Config
    cameras: Mapping[str, CameraRun]  # in config order
    models: Mapping[str, LoadedModel]  # model_key(path) -> the loaded file
    paused: bool = False  # every camera (a CameraRun's own flag pauses just that one)
    generation: int = 0  # counts the changes applied; a prepared change names the one it was made for
    errors: Mapping[str, str] = field(default_factory=dict)  # "camera/region" -> why it does not run

    # -- lookups (raise ConfigError naming what exists) ----------------------------------
    def camera(self, name: str) -> CameraRun:
        if name not in self.cameras:
            raise ConfigError(f"no camera named {name!r} (cameras: {', '.join(self.cameras)})")
        return self.cameras[name]

    def region(self, camera: str, name: str) -> Region:
        return self.camera(camera).region(name)

    def regions(self) -> list[Region]:
        return [region for run in self.cameras.values() for region in run.regions]

    def classifier(self, path: str) -> Classifier:
        return self.models[model_key(path)].classifier

    def default_classifier(self) -> Optional[Classifier]:
        """What /classify and the state topic use: model.path when a region uses it, else the
        first region's model (model.path need not exist then); None without regions."""
        keys = [model_key(region.model_path) for region in self.regions()]
        if not keys:
            return None
        default = model_key(self.config.model.path)
        return self.models[default if default in keys else keys[0]].classifier

    def is_paused(self, camera: str) -> bool:
        return self.paused or self.cameras[camera].paused

    @property
    def all_paused(self) -> bool:
        return self.paused or all(run.paused for run in self.cameras.values())

    # -- new values --------------------------------------------------------------------
    def next(self, **changes: object) -> "Layout":
        return replace(self, generation=self.generation + 1, **changes)  # type: ignore[arg-type]

    def with_models(self, models: Mapping[str, LoadedModel], **changes: object) -> "Layout":
        """The next layout, running ``models`` (and ``changes``), without the files no region uses."""
        runs = changes.get("cameras", self.cameras)
        assert isinstance(runs, Mapping)
        keys = {model_key(region.model_path) for run in runs.values() for region in run.regions}
        return self.next(models={key: m for key, m in models.items() if key in keys}, **changes)

    def used_models(self) -> dict[str, LoadedModel]:
        """``models`` without the files no region uses any more (they close once unreferenced;
        a region on probation holds its previous model itself, for a rollback)."""
        keys = {model_key(region.model_path) for region in self.regions()}
        return {key: model for key, model in self.models.items() if key in keys}
