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

import numpy as np
from pydantic import BaseModel

from edgecam.config import CameraConfig, Config, RegionConfig
from edgecam.errors import ModelError
from edgecam.inference.changes import ChangeRefused
from edgecam.inference.layout import CameraRun, Layout
from edgecam.inference.pool import LoadedModel, ModelLoader, model_key
from edgecam.preview.hub import PreviewHub
from edgecam.regions.region import Region, pixel_box, resolve
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
    loader: Optional[ModelLoader] = None  # new settings (threads, checks): the loader from now on
    errors: dict[str, str] = field(default_factory=dict)  # "camera/region" left out: why (start-up)
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
    return cfg.model_dump(exclude={"regions", "suggested_area"})


def make_plan(layout: Layout, new_config: Config, loader: ModelLoader, factory: CameraFactory,
              disable_failing: bool = False) -> Plan:
    """Everything ``new_config`` needs that does not run yet, prepared. Raises ModelError /
    ConfigError (and builds nothing) when a model file does not load or a source is impossible.
    ``disable_failing`` (start-up): a region whose model does not load is left out, with its
    error in ``plan.errors``, and the others run; only when none can run is that an error."""
    config, needs_restart = keep_restart_only(layout.config, new_config)
    wanted = config.camera_configs()
    regions = {camera: {name: resolve(cfg, config) for name, cfg in camera_cfg.regions.items()}
               for camera, camera_cfg in wanted.items()}
    if loader.settings() != (config.model.threads, config.model.checks, config.model.exact_int8):
        loader = ModelLoader.for_config(config.model)
        loaded: Mapping[str, LoadedModel] = {}  # every session again, with the new settings
    else:
        loaded = layout.models
    models, errors = _load_models(layout, config, regions, loader, loaded, disable_failing)
    for failed in errors:
        camera_name, region_name = failed.split("/")
        del regions[camera_name][region_name]
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
    plan = Plan(layout.generation, config, dict(wanted), cameras, regions, models, needs_restart=needs_restart,
                loader=loader, errors=errors)
    plan.changes = describe_changes(layout, plan)
    return plan


def _load_models(layout: Layout, config: Config, regions: dict[str, dict[str, RegionConfig]], loader: ModelLoader,
                 loaded: Mapping[str, LoadedModel], disable_failing: bool) -> tuple[dict[str, LoadedModel],
                                                                                    dict[str, str]]:
    """Each model file the regions need and do not have yet, checked on recent crops of those
    regions; with ``disable_failing``, the regions whose file failed instead of an error."""
    users: dict[str, list[tuple[str, str, RegionConfig]]] = {}
    for camera, wanted in regions.items():
        for name, cfg in wanted.items():
            assert cfg.model is not None
            users.setdefault(model_key(cfg.model), []).append((camera, name, cfg))
    models: dict[str, LoadedModel] = {}
    errors: dict[str, str] = {}
    for using in users.values():
        camera, name, cfg = using[0]
        assert cfg.model is not None
        raw = config.camera_configs()[camera].regions[name]
        where = _model_key_path(config, camera, name, raw)
        try:
            def crops(_path: str, using: list[tuple[str, str, RegionConfig]] = using) -> list[np.ndarray]:
                return _live_crops(layout, using)

            models.update(loader.load_missing({cfg.model: where}, loaded, crops))
        except ModelError as err:
            if not disable_failing:
                raise
            errors.update({f"{c}/{n}": str(err) for c, n, _ in using})
    if errors and len(errors) == sum(len(w) for w in regions.values()):
        raise ModelError(next(iter(errors.values())))  # nothing could run
    return models, errors


def _live_crops(layout: Layout, using: list[tuple[str, str, RegionConfig]]) -> list[np.ndarray]:
    """The newest frame of each running camera among ``using``, cut to each region's box."""
    crops = []
    for camera, _name, cfg in using:
        run = layout.cameras.get(camera)
        latest = run.camera.ring.latest_copy() if run is not None else None
        if latest is not None:
            frame = latest[1]
            x1, y1, x2, y2 = pixel_box(cfg.box, frame.shape[1], frame.shape[0])
            crops.append(frame[y1:y2, x1:x2])
    return crops[:8]


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
    _start_probations(layout, plan, retunes, runs)
    for region, cfg in retunes:
        region.retune(cfg)
    for camera, camera_cfg in camera_cfgs:
        camera.cfg = camera_cfg
    for run in runs.values():
        run.hub.set_boxes({region.name: region.cfg.box for region in run.regions})
    return layout.with_models(models, config=config, cameras=runs, errors=plan.errors)


def _start_probations(layout: Layout, plan: Plan, retunes: list[tuple[Region, RegionConfig]],
                      runs: Mapping[str, CameraRun]) -> None:
    """Every running region that gets a new model (another file, or its file reloaded) keeps
    the one it had until the new one has proven itself on live frames."""
    new_model = {id(region): cfg.model for region, cfg in retunes if cfg.model != region.cfg.model}
    for run in runs.values():
        for region in run.regions:
            old_key = model_key(region.model_path)
            if old_key not in layout.models:
                continue  # a region new in this plan: nothing to go back to
            if id(region) in new_model or old_key in plan.models:
                region.faults.start_probation(region.model_path, layout.models[old_key])
