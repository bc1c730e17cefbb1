"""The paho client for one device: protocol, credentials, TLS, Last Will, session and logging.

Everything about *how* edgecam talks to the broker lives here; what it publishes
lives in ``sink.py``.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgecam.config import Config, MqttConfig, TlsConfig
from edgecam.errors import ConfigError
from edgecam.publish.mqtt.properties import TEXT, MessageProperties
from edgecam.publish.mqtt.topics import OFFLINE, Topics
from edgecam.secrets import read_secret_file

logger = logging.getLogger("edgecam.publish.mqtt")

_REPEAT_LOG_S = 60.0


def read_password(cfg: MqttConfig) -> str | None:
    """The broker password from ``password_file`` or ``password_env`` (never logged)."""
    if cfg.password_file:
        return read_secret_file(cfg.password_file, "mqtt.password_file")
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise ConfigError(f"mqtt.password_env: environment variable {cfg.password_env} is not set")
        return value
    return None


def configure_tls(client: mqtt.Client, tls: TlsConfig) -> None:
    """TLS with certificate verification, unless ``insecure`` (loud warning)."""
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"mqtt.tls.{key}: file not found: {path}")
    try:
        client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file,
                       cert_reqs=ssl.CERT_NONE if tls.insecure else ssl.CERT_REQUIRED)
    except (ssl.SSLError, OSError, ValueError) as err:
        raise ConfigError(f"mqtt.tls: cannot load certificates: {err}") from None
    if tls.insecure:
        client.tls_insecure_set(True)
        logger.warning("MQTT TLS certificate verification is DISABLED (mqtt.tls.insecure: true): "
                       "anyone on the network path can impersonate the broker")


def describe_connect_error(exc: BaseException | None) -> str:
    """One readable phrase for a failed TCP/TLS connect."""
    if exc is None:
        return "connection failed"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class _QuietPaho(logging.Filter):
    """paho's chatter only when we log at DEBUG. paho 2.2 logs "Client is not
    connected" at ERROR after every failed reconnect; our own line says it better."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logger.isEnabledFor(logging.DEBUG):
            return True
        return record.levelno >= logging.WARNING and not str(record.msg).startswith("Client is not connected")


paho_logger = logging.getLogger(logger.name + ".paho")
paho_logger.addFilter(_QuietPaho())


class FailureLog:
    """Log a repeated connection failure once per minute instead of every retry."""

    def __init__(self) -> None:
        self._last_msg = ""
        self._last_mono = 0.0

    def __call__(self, msg: str) -> None:
        now = time.monotonic()
        if msg != self._last_msg or now - self._last_mono >= _REPEAT_LOG_S:
            logger.warning("%s; retrying", msg)
            self._last_msg, self._last_mono = msg, now
        else:
            logger.debug("%s; retrying", msg)

    def reset(self) -> None:
        self._last_msg = ""


def acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """``info.is_published()`` without its exceptions. paho raises for a message it took while
    disconnected (rc NO_CONN) even after delivering it; the sink drops such messages at the
    next connect before paho can send them (see pump.py), so they are never acknowledged."""
    return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS and info.is_published()


def make_client(config: Config, topics: Topics, props: MessageProperties, queue_limit: int) -> mqtt.Client:
    """A paho client with credentials, TLS, the retained ``offline`` Last Will and back-off.

    ``queue_limit`` caps paho's own queue of QoS > 0 messages."""
    cfg = config.mqtt
    protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id, protocol=protocol)
    client.enable_logger(paho_logger)
    client.suppress_exceptions = True  # a bug in a callback must not kill paho's thread
    if cfg.username:
        client.username_pw_set(cfg.username, read_password(cfg))
    if cfg.tls.enabled:
        configure_tls(client, cfg.tls)
    client.will_set(topics.status, OFFLINE, qos=1, retain=True, properties=props.will(TEXT))
    client.reconnect_delay_set(cfg.reconnect.initial_s, cfg.reconnect.max_s)  # type: ignore[arg-type]
    client.max_queued_messages_set(queue_limit)
    return client


def connect_properties(cfg: MqttConfig) -> Properties | None:
    """MQTT 5 CONNECT properties: the session expiry, when there is one."""
    if cfg.protocol != "5" or not cfg.session_expiry_s:
        return None
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = cfg.session_expiry_s
    return props


def disconnect_properties(cfg: MqttConfig) -> Properties | None:
    """On a clean stop the session is of no further use: ask the broker to drop it now."""
    if cfg.protocol != "5" or not cfg.session_expiry_s:
        return None
    props = Properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    return props


def check_broker(props: Properties | None, host: str, port: int) -> None:
    """Warn when an MQTT 5 broker says it lacks what edgecam relies on (retain, QoS 1)."""
    if props is None:
        return
    if getattr(props, "RetainAvailable", 1) == 0:
        logger.warning("MQTT broker %s:%d does not support retained messages: status and state topics "
                       "will not keep their last value for new subscribers", host, port)
    if getattr(props, "MaximumQoS", 2) == 0:
        logger.warning("MQTT broker %s:%d accepts only QoS 0: state changes cannot be acknowledged and "
                       "stay in the outbox", host, port)
