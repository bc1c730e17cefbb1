"""Home Assistant MQTT discovery: a hub device for the daemon, one device per camera.

Device-based discovery: one retained message per device on
``<ha_prefix>/device/<object_id>/config``. An empty retained payload removes a device;
a component left out of a device's message is removed from it (HA does that itself).

* The hub (object id ``<device_id>``): the daemon's diagnostics (inference and capture
  FPS, latency) and, with the single-source config, the old result sensors.
* Each camera (``<device_id>_<camera>``, ``via_device`` the hub, its ``suggested_area``,
  ``configuration_url`` the web app when it is on): its source's connectivity, a
  running/paused switch, a snapshot button and the latest snapshot as an image, its
  diagnostics (fps, dropped frames), and one enum sensor per region (the model's labels as
  options, Top-k, score, since and previous as attributes), plus a binary sensor where the
  region maps labels to ``on`` (``binary: {on: [open]}``).

Availability: every entity follows the daemon's status topic (its Last Will). The region
sensors also follow the camera's availability topic (``online`` while frames arrive and
the camera is not paused), with ``availability_mode: all``: a lost or paused camera shows
its regions as unavailable, not as their last label. The per-camera topics are in
``cameras.py``; what was announced, and the clean-up of what no longer is, in ``announced.py``.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecam import __version__
from edgecam.config import CameraConfig, Config
from edgecam.publish.mqtt.topics import OFFLINE, ONLINE, Topics

ORIGIN = {"name": "edgecam", "sw": __version__}  # no support URL: the project publishes none
#: A model with more labels than this gets a plain text sensor (HA lists every option in its UI).
MAX_OPTIONS = 100
_ATTRIBUTES = "{{ {'top': value_json.top, 'score': value_json.score, 'since': value_json.since, " \
              "'previous': value_json.previous} | tojson }}"
_WILDCARD_BINDS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class Description:
    """What discovery describes: the running config and, per ``camera/region``, its model's
    labels and name (the daemon passes them once its models are loaded, and after each change)."""

    config: Config
    labels: Mapping[str, Sequence[str]] = field(default_factory=dict)
    models: Mapping[str, str] = field(default_factory=dict)


def title(name: str) -> str:
    """``front_door`` -> ``Front Door`` (HA's names are title case)."""
    return " ".join(part[:1].upper() + part[1:] for part in name.replace("-", " ").replace("_", " ").split())


def hub_object_id(config: Config) -> str:
    return config.device_id


def camera_object_id(config: Config, camera: str) -> str:
    return f"{config.device_id}_{camera}"


def _uid(config: Config, key: str) -> str:
    return f"edgecam_{config.device_id}_{key}"


def configuration_url(config: Config) -> str | None:
    """The web app's address for Home Assistant's "visit" link, or None when the app is off."""
    if config.mqtt.discovery.configuration_url:
        return config.mqtt.discovery.configuration_url
    http = config.preview.http
    if not http.enabled:
        return None
    host = socket.gethostname() if http.bind in _WILDCARD_BINDS else http.bind
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{http.port}/"


def expire_after_s(config: Config) -> int:
    """Diagnostics fed by the stats topic go unknown after three missed snapshots."""
    return max(30, math.ceil(3 * config.stats.interval_s))


def documents(desc: Description) -> dict[str, dict[str, Any]]:
    """Discovery topic -> payload for every device, the hub first (so that an entity moving
    from the hub to a camera is removed from the hub before the camera declares it)."""
    config = desc.config
    topics = Topics.from_config(config)
    docs = {topics.ha_device_config(hub_object_id(config)): hub_payload(desc)}
    for camera, cfg in config.camera_configs().items():
        docs[topics.ha_device_config(camera_object_id(config, camera))] = camera_payload(desc, camera, cfg)
    return docs


def hub_payload(desc: Description) -> dict[str, Any]:
    config = desc.config
    topics = Topics.from_config(config)
    daemon = _availability(topics)
    expire = expire_after_s(config)
    # Up to 0.1 the region sensors were the hub's: removed from it (Home Assistant's way: the
    # platform alone) before their camera's device declares them.
    components: dict[str, dict[str, Any]] = {
        _uid(config, f"{camera}_{region}_state"): {"p": "sensor"}
        for camera, cfg in config.camera_configs().items() for region in cfg.regions}
    if config.single_source:
        components.update(_result_sensors(config, topics, daemon))
    diag = {"entity_category": "diagnostic", "expire_after": expire, "state_class": "measurement", **daemon}
    components[_uid(config, "fps")] = _sensor(
        config, "fps", "Inference FPS", topics.stats, "{{ value_json.inference_fps }}",
        unit_of_measurement="fps", icon="mdi:speedometer", **diag)
    components[_uid(config, "capture_fps")] = _sensor(
        config, "capture_fps", "Capture FPS", topics.stats, "{{ value_json.capture_fps }}",
        unit_of_measurement="fps", icon="mdi:camera", **diag)
    components[_uid(config, "latency_p50")] = _sensor(
        config, "latency_p50", "Latency", topics.stats, "{{ value_json.latency_ms.p50 }}",
        unit_of_measurement="ms", device_class="duration", icon="mdi:timer-outline", **diag)
    dev: dict[str, Any] = {"ids": [f"edgecam_{config.device_id}"], "name": f"Edgecam {config.device_id}",
                           "mf": "edgecam", "mdl": "edgecam daemon", "sw": __version__}
    url = configuration_url(config)
    if url:
        dev["cu"] = url
    return {"dev": dev, "o": ORIGIN, "cmps": components, "qos": 1}


def camera_payload(desc: Description, camera: str, cfg: CameraConfig) -> dict[str, Any]:
    config = desc.config
    topics = Topics.from_config(config)
    daemon = _availability(topics)
    both = {"availability": [{"topic": topics.status, "payload_available": ONLINE,
                              "payload_not_available": OFFLINE},
                             {"topic": topics.camera(camera, "availability"), "payload_available": ONLINE,
                              "payload_not_available": OFFLINE}],
            "availability_mode": "all"}
    key = camera  # unique ids: edgecam_<device>_<camera>_<what>
    components: dict[str, dict[str, Any]] = {
        _uid(config, f"{key}_connected"): {
            "p": "binary_sensor", "name": "Source", "unique_id": _uid(config, f"{key}_connected"),
            "state_topic": topics.camera(camera, "connected"), "device_class": "connectivity",
            "entity_category": "diagnostic", **daemon},
        _uid(config, f"{key}_running"): {
            "p": "switch", "name": "Running", "unique_id": _uid(config, f"{key}_running"),
            "state_topic": topics.camera(camera, "running"), "command_topic": topics.camera(camera, "running/set"),
            "icon": "mdi:play-pause", **daemon},
        _uid(config, f"{key}_snapshot"): {
            "p": "button", "name": "Snapshot", "unique_id": _uid(config, f"{key}_snapshot"),
            "command_topic": topics.camera(camera, "snapshot/press"), "payload_press": "PRESS",
            "icon": "mdi:camera-iris", **daemon},
        _uid(config, f"{key}_image"): {
            "p": "image", "name": "Last Snapshot", "unique_id": _uid(config, f"{key}_image"),
            "image_topic": topics.camera(camera, "snapshot"), "content_type": "image/jpeg", **daemon},
    }
    stats = "{{ value_json.cameras['%s'].%s }}"
    diag = {"entity_category": "diagnostic", "expire_after": expire_after_s(config), **daemon}
    for what, name, extra in (("inference_fps", "Inference FPS", {"unit_of_measurement": "fps",
                                                                   "state_class": "measurement"}),
                              ("capture_fps", "Capture FPS", {"unit_of_measurement": "fps",
                                                               "state_class": "measurement"}),
                              ("dropped", "Dropped Frames", {"state_class": "total_increasing"})):
        components[_uid(config, f"{key}_{what}")] = _sensor(
            config, f"{key}_{what}", name, topics.stats, stats % (camera, what), **extra, **diag)
    models: set[str] = set()
    for region, region_cfg in cfg.regions.items():
        models.add(desc.models.get(f"{camera}/{region}") or Path(region_cfg.model or config.model.path).stem)
        components.update(_region_components(desc, topics, camera, region, region_cfg.binary, both))
        components[_uid(config, f"{key}_{region}_latency")] = _sensor(  # off by default, as Frigate's
            config, f"{key}_{region}_latency", f"{title(region)} Latency", topics.stats,
            "{{ value_json.regions['%s/%s'].latency_ms.p50 }}" % (camera, region), unit_of_measurement="ms",
            device_class="duration", state_class="measurement", enabled_by_default=False, **diag)
    dev: dict[str, Any] = {"ids": [f"edgecam_{config.device_id}_{camera}"], "name": title(camera),
                           "mf": "edgecam", "mdl": ", ".join(sorted(models)) or "edgecam", "sw": __version__,
                           "via_device": f"edgecam_{config.device_id}"}
    if cfg.suggested_area:
        dev["sa"] = cfg.suggested_area
    url = configuration_url(config)
    if url:
        dev["cu"] = url
    return {"dev": dev, "o": ORIGIN, "cmps": components, "qos": 1}


def _region_components(desc: Description, topics: Topics, camera: str, region: str, binary: Any,
                       availability: dict[str, Any]) -> dict[str, dict[str, Any]]:
    config = desc.config
    topic = topics.region_state(camera, region)
    key = f"{camera}_{region}"
    sensor = _sensor(config, f"{key}_state", title(region), topic, "{{ value_json.label }}",
                     json_attributes_topic=topic, json_attributes_template=_ATTRIBUTES,
                     icon="mdi:shape-outline", **availability)
    labels = list(desc.labels.get(f"{camera}/{region}") or ())
    if labels and len(labels) <= MAX_OPTIONS:
        sensor.update(device_class="enum", options=labels)
    out = {sensor["unique_id"]: sensor}
    if binary is not None:
        on = list(binary.on)
        uid = _uid(config, f"{key}_binary")
        out[uid] = {"p": "binary_sensor", "name": f"{title(region)} {title(on[0])}" if len(on) == 1 else
                    f"{title(region)} On", "unique_id": uid, "state_topic": topic,
                    "value_template": "{{ 'ON' if value_json.label in %s else 'OFF' }}" % json.dumps(on),
                    **availability}
        if binary.device_class:
            out[uid]["device_class"] = binary.device_class
    return out


def _result_sensors(config: Config, topics: Topics, daemon: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The single-source layout's sensors on <prefix>/result (kept as they were)."""
    return {
        _uid(config, "top1_label"): _sensor(config, "top1_label", "Top-1 Label", topics.result,
                                            "{{ value_json.top[0].label }}", icon="mdi:label", **daemon),
        _uid(config, "top1_score"): _sensor(config, "top1_score", "Top-1 Score", topics.result,
                                            "{{ value_json.top[0].score }}", state_class="measurement",
                                            icon="mdi:percent", **daemon),
        _uid(config, "inference_ms"): _sensor(config, "inference_ms", "Inference Time", topics.result,
                                              "{{ value_json.latency_ms.inference }}", unit_of_measurement="ms",
                                              state_class="measurement", icon="mdi:timer-outline", **daemon),
    }


def _sensor(config: Config, key: str, name: str, state_topic: str, template: str, **extra: Any) -> dict[str, Any]:
    return {"p": "sensor", "name": name, "unique_id": _uid(config, key), "state_topic": state_topic,
            "value_template": template, **extra}


def _availability(topics: Topics) -> dict[str, Any]:
    return {"availability_topic": topics.status, "payload_available": ONLINE, "payload_not_available": OFFLINE}


def announced_topics(desc: Description) -> set[str]:
    """Every retained topic discovery stands for: the devices' discovery topics, each camera's
    topics and each region's state topic (what is cleared once it is gone)."""
    config = desc.config
    topics = Topics.from_config(config)
    found = set(documents(desc))
    for camera, cfg in config.camera_configs().items():
        found.update(topics.camera(camera, leaf) for leaf in ("availability", "connected", "running", "snapshot"))
        found.update(topics.region_state(camera, region) for region in cfg.regions)
    return found


def discovery_topic(config: Config) -> str:
    """The hub's discovery topic (the one device topic every version of edgecam used)."""
    return Topics.from_config(config).ha_device_config(hub_object_id(config))


def discovery_payload(config: Config) -> dict[str, Any]:
    """The hub's document for ``config`` alone (no labels known)."""
    return hub_payload(Description(config))
