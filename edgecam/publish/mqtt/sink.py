"""The MQTT sink: results, stats, retained state/availability, commands, HA discovery.

Threads: the publisher thread calls ``publish_*``; paho's network thread runs
the callbacks, which only flip flags and post events; a small worker thread
(``edgecam-mqtt``) does everything slower: republishing after a (re)connect,
sending the outbox, flushing queued results, commands, discovery.

Two kinds of traffic. State changes (region states, and results the on_change
policy admits) go to the durable outbox first (``outbox.py``) and leave it only
on the broker's PUBACK (``pump.py``). Per-frame results wait in a bounded
in-memory queue while the broker is away (``results.py``). On every
(re)connect: retained ``online`` on ``<prefix>/status``, retained state and
region states, discovery, subscriptions, then the outbox from its oldest entry,
then the queued results. The Last Will is a retained ``offline``; ``stop()``
publishes it explicitly (a clean disconnect does not trigger the will).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edgecam.config import Config
from edgecam.control.protocol import DaemonControl
from edgecam.publish.mqtt import commands
from edgecam.publish.mqtt.connection import (
    FailureLog,
    check_broker,
    connect_properties,
    describe_connect_error,
    disconnect_properties,
    logger,
    make_client,
)
from edgecam.publish.mqtt.properties import JSON, TEXT, MessageProperties
from edgecam.publish.mqtt.pump import WINDOW, OutboxPump
from edgecam.publish.mqtt.results import Queued, ResultQueue
from edgecam.publish.mqtt.worker import WorkerMixin, json_bytes
from edgecam.publish.mqtt.outbox import Entry, Outbox, default_path
from edgecam.publish.sink import Sink
from edgecam.publish.mqtt.topics import OFFLINE, Topics
from edgecam.result import Result

_FLUSH_BATCH = 64
_EVENT_QUEUE = 256  # commands waiting for the worker; more are dropped (flood)


def make_outbox(config: Config) -> Outbox:
    cfg = config.mqtt.outbox
    path = None
    if cfg.enabled:
        path = default_path(config.device_id) if cfg.path is None else Path(cfg.path).expanduser()
    return Outbox(path, cfg.max_bytes, cfg.result_share)


class MqttSink(WorkerMixin, Sink):
    """Publishes to one broker. ``control`` (the daemon) enables commands and fresh state."""

    name = "mqtt"

    def __init__(self, config: Config, control: Optional[DaemonControl] = None, *,
                 discovery_delay_s: tuple[float, float] = (1.0, 5.0), outbox: Optional[Outbox] = None) -> None:
        self._config = config
        self._cfg = config.mqtt
        self._control = control
        self._topics = Topics.from_config(config)
        self._props = MessageProperties(self._cfg.protocol == "5", config.device_id)
        self._discovery_delay_s = discovery_delay_s
        # Taken before paho's own locks. paho callbacks may take it, except on_publish (paho
        # calls that one holding its message lock, which publish() takes after ours).
        self._lock = threading.Lock()
        self._results = ResultQueue(self._cfg.queue_size, self._cfg.result_expiry_s)
        self.outbox = outbox if outbox is not None else make_outbox(config)
        self._pump = OutboxPump(self.outbox, self._publish_entry)
        self._region_states: dict[str, tuple[bytes, str, str]] = {}  # topic -> latest (payload, camera, region)
        self._connected = False  # broker session up (CONNACK accepted)
        self._session_ready = False  # connected AND the reconnect republishing done: the outbox may flow
        self._online = False  # ... AND the result queue flushed: results go straight to paho
        self._stopping = False
        self._pump_posted = False
        self._counts = {"published": 0, "errors": 0, "connect_failures": 0, "connects": 0}
        self._last_state: Optional[dict[str, Any]] = None
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=_EVENT_QUEUE)
        self._discovery_due: Optional[float] = None
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._fail_log = FailureLog()
        self._reject_log = commands.RejectLog()
        self._client = make_client(config, self._topics, self._props, self._cfg.queue_size + _EVENT_QUEUE + WINDOW)
        client = self._client
        client.on_connect, client.on_connect_fail = self._on_connect, self._on_connect_fail
        client.on_disconnect, client.on_message, client.on_publish = \
            self._on_disconnect, self._on_message, self._on_publish

    def __repr__(self) -> str:
        return f"MqttSink({self._cfg.host}:{self._cfg.port}, client_id={self._config.client_id!r})"

    # ----------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Begin connecting in the background; never blocks on, or fails for, a missing broker."""
        self.outbox.open()
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="edgecam-mqtt", daemon=True)
        self._worker.start()
        self._client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s,
                                   properties=connect_properties(self._cfg))
        self._client.loop_start()
        logger.info("MQTT: connecting to %s:%d as %s (MQTT %s, prefix %s)", self._cfg.host, self._cfg.port,
                    self._config.client_id, self._cfg.protocol, self._topics.prefix)

    def stop(self, timeout_s: float = 1.0) -> None:
        """Deliver what the outbox holds (briefly), publish retained ``offline``, disconnect,
        stop the threads: bounded by ~4 x timeout_s.

        paho's loop_stop() joins its network thread, which may sit in getaddrinfo()
        for a broker given by name while DNS is unreachable; that join runs on a
        helper thread we wait for only ``timeout_s`` (paho's thread is a daemon
        thread, so it never holds the process's exit)."""
        self._stopping = True
        if self._connected:
            self._finish_outbox(timeout_s)
            info = self._client.publish(self._topics.status, OFFLINE, qos=1, retain=True,
                                        properties=self._props.get(TEXT))
            try:
                info.wait_for_publish(timeout=timeout_s)
            except (RuntimeError, ValueError) as err:
                logger.warning("MQTT: could not publish offline status: %s", err)
        self._log_leftovers()
        closer = threading.Thread(target=self._disconnect, name="edgecam-mqtt-stop", daemon=True)
        closer.start()
        closer.join(timeout_s)
        if closer.is_alive():
            logger.warning("MQTT: network thread did not stop within %.1f s; leaving it", timeout_s)
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=timeout_s)
        with self._lock:
            self._connected = self._session_ready = self._online = False
        self.outbox.close()

    def _finish_outbox(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.outbox) and self._connected and time.monotonic() < deadline:
            self._run_pump()
            time.sleep(0.02)

    def _log_leftovers(self) -> None:
        with self._lock:
            left = len(self._results)
        if left:
            logger.warning("MQTT: %d queued result(s) not delivered at shutdown", left)
        waiting = len(self.outbox)
        if waiting and self.outbox.durable:
            logger.info("MQTT: %d state change(s) wait in the outbox %s for the next start", waiting,
                        self.outbox.path)
        elif waiting:
            logger.warning("MQTT: %d state change(s) not delivered at shutdown (the outbox is in memory only)",
                           waiting)

    def _disconnect(self) -> None:
        self._client.disconnect(properties=disconnect_properties(self._cfg))
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
        """Results queued/dropped/expired/published, publish errors, connections, the outbox."""
        with self._lock:
            counts = {"queued": len(self._results), "dropped": self._results.dropped,
                      "expired": self._results.expired, **self._counts, "connected": self._connected}
        outbox = self.outbox.counters()
        outbox.update(in_flight=self._pump.in_flight, delivered=self._pump.delivered, refused=self._pump.refused)
        return {**counts, "outbox": outbox}

    # ----------------------------------------------------------- Sink API
    def publish_result(self, result: Result) -> None:
        payload = json_bytes(result.to_payload())
        topic = self._topics.result_for(result.camera, result.region)
        if result.durable:  # admitted by on_change: a state change, kept until acknowledged
            self.outbox.append(topic, payload, False, result.camera, result.region)
            self._post_pump()
            return
        item = Queued(topic, payload, result.camera, result.region, result.captured_mono)
        with self._lock:
            if self._online and self._send_result(item):
                return
            self._online = False
            self._results.push(item)

    def publish_region_state(self, state: dict[str, Any]) -> None:
        """Retained, QoS 1, through the outbox; the latest per region is re-sent after every reconnect."""
        topic = self._topics.region_state(state["camera"], state["region"])
        payload = json_bytes(state)
        with self._lock:
            self._region_states[topic] = (payload, state["camera"], state["region"])
        self.outbox.append(topic, payload, True, state["camera"], state["region"])
        self._post_pump()

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """Not queued while disconnected: a stale stats snapshot is worthless."""
        if self._connected:
            self._send(self._topics.stats, json_bytes(stats), 0, False, self._props.get(JSON))

    def publish_state(self, state: dict[str, Any]) -> None:
        self._last_state = dict(state)
        if self._connected:
            self._send(self._topics.state, json_bytes(state), 1, True, self._props.get(JSON))

    # ----------------------------------------------------------- sending
    def _send_result(self, item: Queued) -> bool:
        """Hand one result to paho (lock held). False means "not connected after all": keep it."""
        left = self._results.time_left(item)
        if left is not None and left <= 0:
            return True  # expired: counted, never sent
        qos = self._cfg.qos
        props = (self._props.get(JSON, item.camera, item.region) if left is None else
                 self._props.expiring(JSON, item.camera, item.region, left))
        info = self._publish(item.topic, item.payload, qos, False, props)
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0):
            self._counts["published"] += 1  # (QoS > 0 without a connection: paho holds it, see results.py)
            if qos > 0:
                self._results.handed(info, item)
            return True
        if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            return False
        if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self._results.dropped += 1
        else:
            self._counts["errors"] += 1
        return True

    def _send(self, topic: str, payload: bytes | str, qos: int, retain: bool, props: Any = None) -> MQTTErrorCode:
        return self._publish(topic, payload, qos, retain, props).rc

    def _publish(self, topic: str, payload: bytes | str, qos: int, retain: bool, props: Any) -> mqtt.MQTTMessageInfo:
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        except (ValueError, OSError) as err:
            logger.warning("MQTT: publish to %s failed: %s", topic, err)
            info = mqtt.MQTTMessageInfo(0)
            info.rc = MQTTErrorCode.MQTT_ERR_UNKNOWN
            return info
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            logger.warning("MQTT: publish to %s failed: %s", topic, mqtt.error_string(info.rc))
        return info

    def _publish_entry(self, entry: Entry, retain: bool) -> mqtt.MQTTMessageInfo:
        return self._publish(entry.topic, entry.payload, 1, retain, self._props.get(JSON, entry.camera, entry.region))

    def _flush(self) -> None:
        """Send queued results in order, in batches so the publisher thread is not held up."""
        while True:
            with self._lock:
                if not self._session_ready:
                    return
                if not self._results.pending:
                    self._online = True
                    return
                for _ in range(min(_FLUSH_BATCH, len(self._results))):
                    item = self._results.pop()
                    if item is not None and not self._send_result(item):
                        self._results.push_front(item)
                        return

    def _post_pump(self) -> None:
        if not self._pump_posted:
            self._pump_posted = True
            self._post(("pump",))

    def _run_pump(self) -> None:
        """Forget what the broker acknowledged, then send the next outbox entries."""
        self._pump.collect()
        with self._lock:
            if self._session_ready:
                self._pump.pump()

    # ----------------------------------------------------------- paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._counts["connect_failures"] += 1
            self._fail_log(f"MQTT connection refused by broker {self._cfg.host}:{self._cfg.port}: {reason}")
            return
        requeued = 0
        with self._lock:
            self._connected, self._session_ready, self._online = True, False, False
            self._counts["connects"] += 1
            try:
                # paho would now resend what it still holds from the last connection, AFTER this
                # callback: racing what the worker sends next. Drop it; the outbox and the result
                # queue resend their part in order (retained topics are republished anyway).
                client.drop_out_messages()
                requeued = self._results.requeue_unacked()
            except Exception:  # never leave the flags half-set: that would stall the sink for good
                logger.exception("MQTT: resetting after the reconnect failed")
        self._fail_log.reset()
        logger.info("MQTT: connected to %s:%d%s", self._cfg.host, self._cfg.port,
                    f" ({requeued} unacknowledged result(s) queued again)" if requeued else "")
        check_broker(props if self._props.enabled else None, self._cfg.host, self._cfg.port)
        self._post(("connected",))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` block: the exception is current.
        self._counts["connect_failures"] += 1
        what = describe_connect_error(sys.exc_info()[1])
        self._fail_log(f"MQTT: cannot connect to broker {self._cfg.host}:{self._cfg.port}: {what}")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._lock:
            was_connected = self._connected
            self._connected = self._session_ready = self._online = False
        if was_connected and not self._stopping:
            logger.warning("MQTT: connection to %s:%d lost (%s); reconnecting",
                           self._cfg.host, self._cfg.port, reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # Called with paho's message lock held: no lock of ours here, only flags and a post.
        if getattr(reason, "is_failure", False):
            self._pump.refusals[mid] = str(reason)
        if self._pump.in_flight:
            self._post_pump()

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
            if event[0] == "pump":
                self._pump_posted = False  # the next tick pumps anyway
            else:
                logger.warning("MQTT: worker busy, dropping %s event", event[0])
