"""MQTT: the device's sink (``sink.py``) and what it is made of.

``connection`` builds the paho client (credentials, TLS, will, session), ``link``
holds it with the connection's flags, ``properties`` the MQTT 5 properties,
``results`` the in-memory queue of per-frame results, ``outbox``/``outbox_db`` the
durable outbox and ``pump`` moves it to the broker. Two ``worker.EventWorker``
threads: ``delivery`` (state changes, republishing, discovery) and
``command_worker`` (commands: ``commands`` parses them, ``rejects`` logs refusals).
Home Assistant: ``discovery`` (a hub device and one per camera), ``cameras`` (each camera's
availability, connectivity and running topics, and the commands of HA's switch and button),
``announced`` (what was announced, and the clean-up of what is gone); ``memory`` keeps each
region's last state across restarts.
"""

from edgecam.publish.mqtt.connection import (
    configure_tls,
    describe_connect_error,
    read_password,
)
from edgecam.publish.mqtt.sink import MqttSink, make_outbox

__all__ = ["MqttSink", "configure_tls", "describe_connect_error", "make_outbox", "read_password"]
