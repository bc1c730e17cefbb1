"""The MQTT sink: results, stats, retained state/availability, commands, HA discovery.

Threads: the publisher thread calls ``publish_*``; paho's network thread runs
the callbacks, which only flip flags and post events; a small worker thread
(``edgecam-mqtt``) does everything slower: republishing after a (re)connect,
flushing queued results, commands, discovery.

While the broker is unreachable, results wait in our own bounded queue
(``mqtt.queue_size``); when it is full the OLDEST is dropped and counted. On
every (re)connect: retained ``online`` on ``<prefix>/status``, retained state,
discovery, subscriptions, then the queue is flushed in order. The Last Will is
a retained ``offline``; ``stop()`` publishes it explicitly (a clean disconnect
does not trigger the will).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import ssl
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edgecam.config import Config, MqttConfig, TlsConfig
from edgecam.errors import ConfigError
from edgecam.publish import commands
from edgecam.publish.discovery import discovery_payload, discovery_topic
from edgecam.publish.sink import Sink
from edgecam.publish.topics import OFFLINE, ONLINE, Topics
from edgecam.result import Result
from edgecam.control.protocol import DaemonControl
from edgecam.secrets import read_secret_file

logger = logging.getLogger(__name__)

_FLUSH_BATCH = 64
_EVENT_QUEUE = 256  # commands waiting for the worker; more are dropped (flood)
_REPEAT_LOG_S = 60.0


def read_password(cfg: MqttConfig) -> Optional[str]:
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


def describe_connect_error(exc: Optional[BaseException]) -> str:
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


_paho_logger = logging.getLogger(__name__ + ".paho")
_paho_logger.addFilter(_QuietPaho())


class _FailureLog:
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


class MqttSink(Sink):
    """Publishes to one broker. ``control`` (the daemon) enables commands and fresh state."""

    name = "mqtt"

    def __init__(self, config: Config, control: Optional[DaemonControl] = None, *,
                 discovery_delay_s: tuple[float, float] = (1.0, 5.0)) -> None:
        self._config = config
        self._cfg = config.mqtt
        self._control = control
        self._topics = Topics.from_config(config)
        self._discovery_delay_s = discovery_delay_s
        self._lock = threading.Lock()
        self._pending: deque[tuple[str, bytes]] = deque()  # (topic, payload) results waiting
        self._region_states: dict[str, bytes] = {}  # topic -> latest retained region state
        self._connected = False  # broker session up (CONNACK accepted)
        self._online = False  # connected AND queue flushed: results go straight to paho
        self._stopping = False
        self._counts = {"dropped": 0, "published": 0, "errors": 0, "connect_failures": 0, "connects": 0}
        self._last_state: Optional[dict[str, Any]] = None
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=_EVENT_QUEUE)
        self._discovery_due: Optional[float] = None
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._fail_log = _FailureLog()
        self._reject_log = commands.RejectLog()
        self._client = self._make_client()

    def __repr__(self) -> str:
        return f"MqttSink({self._cfg.host}:{self._cfg.port}, client_id={self._config.client_id!r})"

    # ----------------------------------------------------------- setup
    def _make_client(self) -> mqtt.Client:
        cfg = self._cfg
        protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._config.client_id, protocol=protocol)
        client.enable_logger(_paho_logger)
        client.suppress_exceptions = True  # a bug in a callback must not kill paho's thread
        if cfg.username:
            client.username_pw_set(cfg.username, read_password(cfg))
        if cfg.tls.enabled:
            configure_tls(client, cfg.tls)
        client.will_set(self._topics.status, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(cfg.reconnect.initial_s, cfg.reconnect.max_s)  # type: ignore[arg-type]
        client.max_queued_messages_set(cfg.queue_size + _EVENT_QUEUE)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Begin connecting in the background; never blocks on, or fails for, a missing broker."""
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="edgecam-mqtt", daemon=True)
        self._worker.start()
        self._client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s)
        self._client.loop_start()
        logger.info("MQTT: connecting to %s:%d as %s (prefix %s)", self._cfg.host, self._cfg.port,
                    self._config.client_id, self._topics.prefix)

    def stop(self, timeout_s: float = 1.0) -> None:
        """Publish retained ``offline``, disconnect, stop the threads: bounded by ~3 x timeout_s.

        paho's loop_stop() joins its network thread, which may sit in getaddrinfo()
        for a broker given by name while DNS is unreachable; that join runs on a
        helper thread we wait for only ``timeout_s`` (paho's thread is a daemon
        thread, so it never holds the process's exit)."""
        self._stopping = True
        if self._connected:
            info = self._client.publish(self._topics.status, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=timeout_s)
            except (RuntimeError, ValueError) as err:
                logger.warning("MQTT: could not publish offline status: %s", err)
        with self._lock:
            left = len(self._pending)
        if left:
            logger.warning("MQTT: %d queued result(s) not delivered at shutdown", left)
        closer = threading.Thread(target=self._disconnect, name="edgecam-mqtt-stop", daemon=True)
        closer.start()
        closer.join(timeout_s)
        if closer.is_alive():
            logger.warning("MQTT: network thread did not stop within %.1f s; leaving it", timeout_s)
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=timeout_s)
        with self._lock:
            self._connected = self._online = False

    def _disconnect(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # ----------------------------------------------------------- public state
    @property
    def connected(self) -> bool:
        """True while the broker session is up (CONNACK accepted)."""
        return self._connected

    @property
    def topics(self) -> Topics:
        return self._topics

    def counters(self) -> dict[str, Any]:
        """queued/dropped/published results, publish errors, connection counts."""
        with self._lock:
            return {"queued": len(self._pending), **self._counts, "connected": self._connected}

    # ----------------------------------------------------------- Sink API
    def publish_result(self, result: Result) -> None:
        payload = json.dumps(result.to_payload(), separators=(",", ":")).encode("utf-8")
        item = (self._topics.result_for(result.camera, result.region), payload)
        with self._lock:
            if self._online and self._send_result(item):
                return
            self._online = False
            self._enqueue(item)

    def publish_region_state(self, state: dict[str, Any]) -> None:
        """Retained, QoS 1; the latest per region is re-sent after every reconnect."""
        topic = self._topics.region_state(state["camera"], state["region"])
        payload = _json(state)
        with self._lock:
            self._region_states[topic] = payload
        if self._connected:
            self._send(topic, payload, 1, True)

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """Not queued while disconnected: a stale stats snapshot is worthless."""
        if self._connected:
            self._send(self._topics.stats, _json(stats), 0, False)

    def publish_state(self, state: dict[str, Any]) -> None:
        self._last_state = dict(state)
        if self._connected:
            self._send(self._topics.state, _json(state), 1, True)

    # ----------------------------------------------------------- queue (lock held)
    def _enqueue(self, payload: tuple[str, bytes]) -> None:
        if len(self._pending) >= self._cfg.queue_size:
            self._pending.popleft()
            self._counts["dropped"] += 1
            if self._counts["dropped"] in (1, 10, 100) or self._counts["dropped"] % 1000 == 0:
                logger.warning("MQTT: queue full (%d), dropping oldest results (%d dropped so far)",
                               self._cfg.queue_size, self._counts["dropped"])
        self._pending.append(payload)

    def _send_result(self, item: tuple[str, bytes]) -> bool:
        """Hand one result to paho. False means "not connected after all": keep it queued."""
        qos = self._cfg.qos
        rc = self._send(item[0], item[1], qos, False)
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0):
            self._counts["published"] += 1  # (QoS > 0 without a connection: paho resends it)
            return True
        if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            return False
        self._counts["dropped" if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE else "errors"] += 1
        return True

    def _send(self, topic: str, payload: bytes | str, qos: int, retain: bool) -> MQTTErrorCode:
        try:
            rc = self._client.publish(topic, payload, qos=qos, retain=retain).rc
        except (ValueError, OSError) as err:
            logger.warning("MQTT: publish to %s failed: %s", topic, err)
            return MQTTErrorCode.MQTT_ERR_UNKNOWN
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            logger.warning("MQTT: publish to %s failed: %s", topic, mqtt.error_string(rc))
        return rc

    def _flush(self) -> None:
        """Send queued results in order, in batches so the publisher thread is not held up."""
        while True:
            with self._lock:
                if not self._connected:
                    return
                if not self._pending:
                    self._online = True
                    return
                for _ in range(min(_FLUSH_BATCH, len(self._pending))):
                    payload = self._pending.popleft()
                    if not self._send_result(payload):
                        self._pending.appendleft(payload)
                        return

    # ----------------------------------------------------------- paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._counts["connect_failures"] += 1
            self._fail_log(f"MQTT connection refused by broker {self._cfg.host}:{self._cfg.port}: {reason}")
            return
        with self._lock:
            self._connected = True
            self._counts["connects"] += 1
        self._fail_log.reset()
        logger.info("MQTT: connected to %s:%d", self._cfg.host, self._cfg.port)
        self._post(("connected",))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` block: the exception is current.
        self._counts["connect_failures"] += 1
        what = describe_connect_error(sys.exc_info()[1])
        self._fail_log(f"MQTT: cannot connect to broker {self._cfg.host}:{self._cfg.port}: {what}")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._lock:
            was_connected, self._connected, self._online = self._connected, False, False
        if was_connected and not self._stopping:
            logger.warning("MQTT: connection to %s:%d lost (%s); reconnecting",
                           self._cfg.host, self._cfg.port, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.retain and message.topic == self._topics.cmd:
            # A command someone published with the retain flag would run again at every
            # start (a retained "pause" pauses every boot): never act on it.
            self._post(("retained", message.topic, len(message.payload)))
            return
        self._post(("message", message.topic, bytes(message.payload)))

    def _post(self, event: tuple[Any, ...]) -> None:
        try:
            self._events.put_nowait(event)
        except queue.Full:
            logger.warning("MQTT: worker busy, dropping %s event", event[0])

    # ----------------------------------------------------------- worker thread
    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = 0.5
            if self._discovery_due is not None:
                timeout = max(0.0, min(timeout, self._discovery_due - time.monotonic()))
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                event = None
            try:
                if event is not None:
                    self._dispatch(event)
                if self._discovery_due is not None and time.monotonic() >= self._discovery_due:
                    self._discovery_due = None
                    self._publish_discovery()
            except Exception:  # keep the worker alive whatever a handler does
                logger.exception("MQTT worker: unexpected error handling %s", event and event[0])

    def refresh(self) -> None:
        """Publish discovery and state again (the models changed: new labels, new names)."""
        self._post(("refresh",))

    def _dispatch(self, event: tuple[Any, ...]) -> None:
        if event[0] == "connected":
            self._on_session_up()
        elif event[0] == "refresh":
            state = self._current_state()
            if state is not None and self._connected:
                self._send(self._topics.state, _json(state), 1, True)
            if self._cfg.discovery.enabled:
                self._publish_discovery()
        elif event[0] == "retained":
            logger.warning("MQTT: ignoring a retained command on %s (%d bytes): commands must not be "
                           "published with the retain flag; clear it with an empty retained message",
                           event[1], event[2])
        elif event[0] == "message":
            topic, payload = event[1], event[2]
            if topic == self._topics.cmd:
                self._run_command(payload)
            elif topic == self._topics.ha_status and payload.strip() == ONLINE.encode():
                low, high = self._discovery_delay_s
                self._discovery_due = time.monotonic() + random.uniform(low, high)

    def _on_session_up(self) -> None:
        """Everything a subscriber or Home Assistant needs after each (re)connect."""
        subs = []
        if self._cfg.commands.enabled and self._control is not None:
            subs.append((self._topics.cmd, 1))
        if self._cfg.discovery.enabled:
            subs.append((self._topics.ha_status, 1))
        if subs:
            rc, _ = self._client.subscribe(subs)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                logger.warning("MQTT: subscribe failed: %s", mqtt.error_string(rc))
        self._send(self._topics.status, ONLINE, 1, True)
        state = self._current_state()
        if state is not None:
            self._send(self._topics.state, _json(state), 1, True)
        with self._lock:
            region_states = list(self._region_states.items())
        for topic, payload in region_states:
            self._send(topic, payload, 1, True)
        if self._cfg.discovery.enabled:
            self._publish_discovery()
        self._flush()

    def _current_state(self) -> Optional[dict[str, Any]]:
        if self._control is not None:
            try:
                self._last_state = dict(self._control.state())
            except Exception:
                logger.exception("MQTT: control.state() failed; republishing the last known state")
        return self._last_state

    def _publish_discovery(self) -> None:
        if self._connected:
            payload = discovery_payload(self._config)
            self._send(discovery_topic(self._config), _json(payload), 1, True)

    def _run_command(self, payload: bytes) -> None:
        outcome = commands.handle_command(payload, self._control, self._cfg.commands.max_payload_bytes,
                                          self._reject_log)
        if outcome.snapshot is not None:
            self._send(self._topics.snapshot, outcome.snapshot, 1, False)
            outcome.reply["topic"] = self._topics.snapshot
        if outcome.state is not None:
            self._last_state = dict(outcome.state)
            self._send(self._topics.state, _json(outcome.state), 1, True)
        self._send(self._topics.cmd_response, commands.encode_reply(outcome.reply), 1, False)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode("utf-8")
