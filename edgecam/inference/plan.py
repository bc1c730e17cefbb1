"""A new configuration, diffed against what runs: what to build, load, retune, stop.

``make_plan`` runs on the caller's thread and does the slow part: it builds the
cameras that are new or whose source changed (not started yet) and loads the
model files that are new or changed on disk. ``apply_plan`` runs on the owner
(the inference thread, between two turns) and only swaps prepared objects in;
untouched cameras keep their ring, capture thread and hub, and a region keeps its
debounced state unless its model changed. Settings that cannot change without a
restart (the broker, the web app's port...) keep their running value and are
named in ``needs_restart``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from pydantic import BaseModel

from edgecam.config import CameraConfig, Config, RegionConfig
from edgecam.errors import ModelError
from edgecam.inference.changes import ChangeRefused
from edgecam.inference.layout import CameraRun, Layout
from edgecam.inference.pool import LoadedModel, ModelLoader, model_key
from edgecam.preview.hub import PreviewHub
from edgecam.regions.region import Region, resolve
from edgecam.sources.base import FrameSource
from edgecam.sources.camera import Camera

#: Config keys a running daemon cannot change: a reload names them and keeps the running value.
RESTART_ONLY = ("device_id", "mqtt", "preview", "publish.queue_size", "collect")


class CameraFactory:
    """Builds (does not start) a camera. Sources given by name (tests, benchmarks) are used
    instead of the configured ones, again whenever that camera is rebuilt."""

    def __init__(self, wake: Callable[[], None], given: Optional[Mapping[str, FrameSource]] = None) -> None:
        self._wake = wake
        self._given = dict(given or {})

    def build(self, name: str, cfg: CameraConfig, ring_capacity: int) -> Camera:
        return Camera(name, cfg, ring_capacity, self._wake, source=self._given.get(name))


@dataclass
class Plan:
    base_generation: int
    config: Config
    camera_configs: dict[str, CameraConfig]  # every camera, in config order
    cameras: dict[str, Camera]  # new Camera objects: added, or replacing one whose source changed
    regions: dict[str, dict[str, RegionConfig]]  # camera -> region -> resolved settings, in config order
    models: dict[str, LoadedModel]  # files loaded for this change
    changes: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    retired: list[Camera] = field(default_factory=list)  # filled by apply_plan: stop these afterwards

    def discard(self) -> None:
        """The plan was not applied: the cameras it built never started; close their sources."""
        for camera in self.cameras.values():
            camera.source.close()


def region_key_path(config: Config, camera: str, region: str) -> str:
    return f"cameras.{camera}.regions.{region}" if config.cameras else "source"


def _model_key_path(config: Config, camera: str, region: str, cfg: RegionConfig) -> str:
    return f"{region_key_path(config, camera, region)}.model" if cfg.model else "model.path"


def _dotted(config: BaseModel, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def keep_restart_only(running: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with every RESTART_ONLY key that differs put back to its running value; and those keys."""
    changed = [key for key in RESTART_ONLY if _dotted(running, key) != _dotted(new, key)]
    if not changed:
        return new, []
    data = new.model_dump()
    for key in changed:
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        value = _dotted(running, key)
        node[leaf] = value.model_dump() if isinstance(value, BaseModel) else value
    return Config.model_validate(data), changed


def _source_part(cfg: CameraConfig) -> dict[str, Any]:
    return cfg.model_dump(exclude={"regions"})


def make_plan(layout: Layout, new_config: Config, loader: ModelLoader, factory: CameraFactory) -> Plan:
    """Everything ``new_config`` needs that does not run yet, prepared. Raises ModelError /
    ConfigError (and builds nothing) when a model file does not load or a source is impossible."""
    config, needs_restart = keep_restart_only(layout.config, new_config)
    wanted = config.camera_configs()
    regions = {camera: {name: resolve(cfg, config) for name, cfg in camera_cfg.regions.items()}
               for camera, camera_cfg in wanted.items()}
    model_paths = {cfg.model: _model_key_path(config, camera, name, config_region)
                   for camera, camera_cfg in wanted.items()
                   for name, config_region in camera_cfg.regions.items()
                   for cfg in [regions[camera][name]] if cfg.model is not None}
    if loader.threads != config.model.threads:
        loader.threads = config.model.threads
        loaded: Mapping[str, LoadedModel] = {}  # every session again, with the new thread count
    else:
        loaded = layout.models
    models = loader.load_missing(model_paths, loaded)
    capacity_changed = config.buffer.capacity != layout.config.buffer.capacity
    cameras: dict[str, Camera] = {}
    try:
        for name, cfg in wanted.items():
            running = layout.cameras.get(name)
            if running is None or capacity_changed or _source_part(running.camera.cfg) != _source_part(cfg):
                cameras[name] = factory.build(name, cfg, config.buffer.capacity)
    except BaseException:
        for camera in cameras.values():
            camera.source.close()
        raise
    plan = Plan(layout.generation, config, dict(wanted), cameras, regions, models, needs_restart=needs_restart)
    plan.changes = describe_changes(layout, plan)
    return plan


def describe_changes(layout: Layout, plan: Plan) -> list[str]:
    """One line per change, for the reply and the log."""
    lines = []
    for name in plan.regions:
        if name not in layout.cameras:
            lines.append(f"camera {name} added")
        elif name in plan.cameras:
            lines.append(f"camera {name}: source changed (reopened)")
    lines += [f"camera {name} removed" for name in layout.cameras if name not in plan.regions]
    for camera, wanted in plan.regions.items():
        running = {r.name: r for r in layout.cameras[camera].regions} if camera in layout.cameras else {}
        for region, cfg in wanted.items():
            if camera in layout.cameras and region not in running:
                lines.append(f"region {camera}/{region} added")
            elif region in running and running[region].cfg != cfg:
                keys = [k for k, v in cfg.model_dump().items() if running[region].cfg.model_dump()[k] != v]
                lines.append(f"region {camera}/{region}: {', '.join(keys)} changed")
        lines += [f"region {camera}/{region} removed" for region in running if region not in wanted]
    lines += [f"model file {_short(key)} changed on disk: reloaded" for key in plan.models if key in layout.models]
    for section in ("publish", "inference", "stats", "buffer", "model"):
        if getattr(layout.config, section) != getattr(plan.config, section):
            lines.append(f"{section} settings changed")
    if layout.config.log_level != plan.config.log_level:
        lines.append(f"log_level {plan.config.log_level}")
    return lines


def _short(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def apply_plan(layout: Layout, plan: Plan) -> Layout:
    """On the owner thread: the running layout with ``plan`` swapped in. Quick, no I/O."""
    if layout.generation != plan.base_generation:
        raise ChangeRefused("what runs changed while this change was being prepared: try again")
    config = plan.config
    models = {**layout.models, **plan.models}
    for cfg in (c for regions in plan.regions.values() for c in regions.values()):
        if cfg.model is not None and model_key(cfg.model) not in models:
            raise ModelError(f"model {cfg.model} is not loaded")  # a bug in make_plan: change nothing
    runs: dict[str, CameraRun] = {}
    retunes: list[tuple[Region, RegionConfig]] = []
    camera_cfgs: list[tuple[Camera, CameraConfig]] = []
    for name, wanted in plan.regions.items():
        old = layout.cameras.get(name)
        old_regions = {r.name: r for r in old.regions} if old is not None else {}
        regions = []
        for region_name, cfg in wanted.items():
            region = old_regions.get(region_name)
            if region is None:
                region = Region(name, region_name, cfg, config.inference.smoothing)
            elif region.cfg != cfg:
                retunes.append((region, cfg))
            regions.append(region)
        camera = plan.cameras.get(name) or (old.camera if old is not None else None)
        assert camera is not None, f"make_plan built no camera {name}"
        if camera.cfg != plan.camera_configs[name]:
            camera_cfgs.append((camera, plan.camera_configs[name]))  # its regions changed, not its source
        hub = old.hub if old is not None else PreviewHub(config.preview.http.max_fps)
        runs[name] = CameraRun(camera, tuple(regions), hub, old.paused if old is not None else False)
    plan.retired = [run.camera for name, run in layout.cameras.items()
                    if name not in runs or runs[name].camera is not run.camera]
    for region, cfg in retunes:
        region.retune(cfg)
    for camera, camera_cfg in camera_cfgs:
        camera.cfg = camera_cfg
    for run in runs.values():
        run.hub.set_boxes({region.name: region.cfg.box for region in run.regions})
    used = {model_key(region.model_path) for run in runs.values() for region in run.regions}
    return layout.next(config=config, cameras=runs, models={k: m for k, m in models.items() if k in used})
