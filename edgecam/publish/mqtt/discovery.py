"""Home Assistant MQTT discovery (device-based), off by default.

One retained message on ``<ha_prefix>/device/<device_id>/config`` declares the
device and its sensors; Home Assistant then reads them from our own topics.
An empty retained payload on the same topic removes the device.
The FPS sensors read ``inference_fps`` / ``capture_fps`` from the stats payload
(edgecam.service.stats.StatsCollector.snapshot). Every region gets one sensor
whose state is its debounced label, with the Top-k, score and time of the last
change as attributes (from its retained ``<prefix>/<camera>/<region>/state``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecam import __version__
from edgecam.config import Config
from edgecam.publish.mqtt.topics import OFFLINE, ONLINE, Topics

ORIGIN = {"name": "edgecam", "sw": __version__, "url": "https://github.com/edgecam/edgecam"}


def _sensor(device_id: str, key: str, name: str, state_topic: str, template: str,
            **extra: Any) -> tuple[str, dict[str, Any]]:
    unique_id = f"edgecam_{device_id}_{key}"
    return unique_id, {"p": "sensor", "name": name, "unique_id": unique_id,
                       "state_topic": state_topic, "value_template": template, **extra}


def discovery_payload(config: Config, model_name: str | None = None) -> dict[str, Any]:
    """The device discovery document; ``dev.mdl`` is the model name (default: file stem)."""
    model_name = model_name or Path(config.model.path).stem or "edgecam"
    topics = Topics.from_config(config)
    dev_id = config.device_id
    components = dict(_result_sensors(dev_id, topics) if config.single_source else [])
    components.update(_device_sensors(dev_id, topics))
    components.update(_region_sensors(config, topics))
    return {
        "dev": {"ids": [f"edgecam_{dev_id}"], "name": f"edgecam {dev_id}", "mf": "edgecam",
                "mdl": model_name, "sw": __version__},
        "o": ORIGIN,
        "cmps": components,
        "availability_topic": topics.status,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": 1,
    }


_ATTRIBUTES = "{{ {'top': value_json.top, 'score': value_json.score, 'since': value_json.since, " \
              "'previous': value_json.previous} | tojson }}"


def _region_sensors(config: Config, topics: Topics) -> list[tuple[str, dict[str, Any]]]:
    """One sensor per region: the debounced label, with Top-k and the last change as attributes."""
    sensors = []
    for camera, camera_cfg in config.camera_configs().items():
        for region in camera_cfg.regions:
            topic = topics.region_state(camera, region)
            sensors.append(_sensor(config.device_id, f"{camera}_{region}_state", f"{camera} {region}", topic,
                                   "{{ value_json.label }}", json_attributes_topic=topic,
                                   json_attributes_template=_ATTRIBUTES, icon="mdi:shape-outline"))
    return sensors


def _result_sensors(dev_id: str, topics: Topics) -> list[tuple[str, dict[str, Any]]]:
    """The single-source layout's sensors on <prefix>/result (kept as they were)."""
    return [
        _sensor(dev_id, "top1_label", "Top-1 label", topics.result,
                "{{ value_json.top[0].label }}", icon="mdi:label"),
        _sensor(dev_id, "top1_score", "Top-1 score", topics.result,
                "{{ value_json.top[0].score }}", state_class="measurement", icon="mdi:percent"),
        _sensor(dev_id, "inference_ms", "Inference time", topics.result,
                "{{ value_json.latency_ms.inference }}", unit_of_measurement="ms",
                state_class="measurement", icon="mdi:timer-outline"),
    ]


def _device_sensors(dev_id: str, topics: Topics) -> list[tuple[str, dict[str, Any]]]:
    return [
        _sensor(dev_id, "fps", "Inference FPS", topics.stats, "{{ value_json.inference_fps }}",
                unit_of_measurement="fps", state_class="measurement", icon="mdi:speedometer"),
        _sensor(dev_id, "capture_fps", "Capture FPS", topics.stats, "{{ value_json.capture_fps }}",
                unit_of_measurement="fps", state_class="measurement", icon="mdi:camera"),
    ]


def discovery_topic(config: Config) -> str:
    return Topics.from_config(config).ha_device_config(config.device_id)
