"""MQTT topic names, derived in one place from the config.

Everything a device publishes lives under ``<prefix>`` (default
``edgecam/<device_id>``):

==========================  ========  ====  =========================================
topic                       retained  QoS   payload
==========================  ========  ====  =========================================
``<prefix>/status``         yes       1     ``online`` / ``offline`` (also the Last Will)
``<prefix>/state``          yes       1     JSON: DaemonControl.state()
``<prefix>/<cam>/<reg>/result``  no  cfg  JSON: Result.to_payload() (``<prefix>/result``
                                          with the single-source config)
``<prefix>/<cam>/<reg>/state``   yes  1   JSON: the region's debounced state, on change
``<prefix>/stats``          no        0     JSON: the periodic stats snapshot
``<prefix>/snapshot``       no        1     JPEG bytes (answer to the ``snapshot`` command)
``<prefix>/cmd``            (in)      1     JSON command, see edgecam.publish.mqtt.commands
``<prefix>/cmd/response``   no        1     JSON reply to each command
==========================  ========  ====  =========================================

With Home Assistant discovery on, each camera has a few more (``cameras.py``):

===================================  ========  =============================================
``<prefix>/<cam>/availability``      yes       ``online`` while frames arrive and it runs
``<prefix>/<cam>/connected``         yes       ``ON`` / ``OFF``: frames arrive from its source
``<prefix>/<cam>/running``           yes       ``ON`` / ``OFF``: classifying / paused
``<prefix>/<cam>/running/set``       (in)      ``ON`` / ``OFF`` from Home Assistant's switch
``<prefix>/<cam>/snapshot/press``    (in)      any payload: a snapshot of that camera
``<prefix>/<cam>/snapshot``          yes       JPEG: that camera's latest snapshot
===================================  ========  =============================================
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecam.config import Config

ONLINE = "online"
OFFLINE = "offline"
HA_STATUS_TOPIC_SUFFIX = "status"  # <discovery prefix>/status, e.g. homeassistant/status


@dataclass(frozen=True)
class Topics:
    prefix: str
    discovery_prefix: str = "homeassistant"
    single_source: bool = True  # the old config layout: results keep <prefix>/result

    @classmethod
    def from_config(cls, config: Config) -> Topics:
        return cls(prefix=config.topic_prefix, discovery_prefix=config.mqtt.discovery.prefix,
                   single_source=config.single_source)

    def result_for(self, camera: str, region: str) -> str:
        return self.result if self.single_source else f"{self.prefix}/{camera}/{region}/result"

    def region_state(self, camera: str, region: str) -> str:
        return f"{self.prefix}/{camera}/{region}/state"

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def state(self) -> str:
        return f"{self.prefix}/state"

    @property
    def result(self) -> str:
        return f"{self.prefix}/result"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    @property
    def snapshot(self) -> str:
        return f"{self.prefix}/snapshot"

    @property
    def cmd(self) -> str:
        return f"{self.prefix}/cmd"

    @property
    def cmd_response(self) -> str:
        return f"{self.prefix}/cmd/response"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/{HA_STATUS_TOPIC_SUFFIX}"

    def camera(self, camera: str, leaf: str) -> str:
        """A per-camera topic: ``leaf`` is availability, connected, running, running/set,
        snapshot/press or snapshot (three or four levels: never a region's state or result)."""
        return f"{self.prefix}/{camera}/{leaf}"

    def camera_of(self, topic: str, leaf: str) -> str | None:
        """The camera named in ``topic`` when it is that camera's ``leaf`` topic, else None."""
        head, sep, tail = topic.partition(f"{self.prefix}/")
        if head or not sep or not tail.endswith(f"/{leaf}"):
            return None
        camera = tail[: -len(leaf) - 1]
        return camera if camera and "/" not in camera else None

    def ha_device_config(self, device_id: str) -> str:
        return f"{self.discovery_prefix}/device/{device_id}/config"
