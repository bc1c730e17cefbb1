"""MQTT: the device's sink (``sink.py``) and what it is made of.

``connection`` builds the paho client (credentials, TLS, will, session),
``properties`` the MQTT 5 properties, ``results`` the in-memory queue of
per-frame results, ``pump`` moves the durable outbox (``publish/outbox.py``)
to the broker.
"""

from edgecam.publish.mqtt.connection import (
    configure_tls,
    describe_connect_error,
    read_password,
)
from edgecam.publish.mqtt.sink import MqttSink, make_outbox

__all__ = ["MqttSink", "configure_tls", "describe_connect_error", "make_outbox", "read_password"]
