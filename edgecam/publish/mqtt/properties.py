"""MQTT 5 properties on what edgecam publishes; nothing at all with MQTT 3.1.1.

Every message says what it carries (Content Type, Payload Format Indicator for
text) and whose it is (User Properties ``device``, and ``camera``/``region``
where it belongs to one), so a consumer or a broker rule can route it without
parsing the payload. Per-frame results also carry a Message Expiry Interval:
the rest of ``mqtt.result_expiry_s``, so the broker never hands a stale frame
to a subscriber that comes back late.
"""

from __future__ import annotations

import math

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

JSON = "application/json"
TEXT = "text/plain"
JPEG = "image/jpeg"
_UTF8 = (JSON, TEXT)


class MessageProperties:
    """Builds (and caches) PUBLISH properties; every method returns None when MQTT 5 is off."""

    def __init__(self, enabled: bool, device: str) -> None:
        self.enabled = enabled
        self.device = device
        self._cache: dict[tuple[str, str, str], Properties] = {}
        self._expiring: dict[tuple[str, str, str, int], Properties] = {}

    def get(self, content_type: str, camera: str = "", region: str = "") -> Properties | None:
        """Properties without expiry (cached: paho only reads them)."""
        if not self.enabled:
            return None
        key = (content_type, camera, region)
        props = self._cache.get(key)
        if props is None:
            props = self._cache[key] = self._build(PacketTypes.PUBLISH, content_type, camera, region)
        return props

    def expiring(self, content_type: str, camera: str, region: str, expiry_s: float) -> Properties | None:
        """Properties with a Message Expiry Interval of ``expiry_s`` rounded up to whole seconds
        (cached too: a fresh result always has the full interval left)."""
        if not self.enabled:
            return None
        seconds = max(1, math.ceil(expiry_s))
        key = (content_type, camera, region, seconds)
        props = self._expiring.get(key)
        if props is None:
            if len(self._expiring) >= 4096:  # many regions x every second left: start over
                self._expiring.clear()
            props = self._expiring[key] = self._build(PacketTypes.PUBLISH, content_type, camera, region)
            props.MessageExpiryInterval = seconds
        return props

    def will(self, content_type: str) -> Properties | None:
        if not self.enabled:
            return None
        return self._build(PacketTypes.WILLMESSAGE, content_type, "", "")

    def _build(self, packet_type: int, content_type: str, camera: str, region: str) -> Properties:
        props = Properties(packet_type)
        props.ContentType = content_type
        if content_type in _UTF8:
            props.PayloadFormatIndicator = 1  # UTF-8 text
        users = [("device", self.device)]
        if camera:
            users.append(("camera", camera))
        if region:
            users.append(("region", region))
        props.UserProperty = users
        return props
