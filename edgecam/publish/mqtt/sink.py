"""The MQTT sink: results, stats, retained state/availability, commands, HA discovery.

Threads: the publisher thread calls ``publish_*``; paho's network thread runs the
callbacks, which only flip flags and post events; two workers do everything slower:

* ``edgecam-mqtt`` delivers (``delivery.py``): republishing after a (re)connect,
  the outbox, the queued results, discovery;
* ``edgecam-mqtt-cmd`` runs commands (``command_worker.py``), so that no command,
  however many and however slow, holds up a state change.

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

import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edgecam.config import Config
from edgecam.control.protocol import DaemonControl
from edgecam.publish.mqtt import announced, cameras
from edgecam.publish.mqtt.command_worker import CommandHandler
from edgecam.publish.mqtt.connection import (
    FailureLog,
    check_broker,
    connect_properties,
    describe_connect_error,
    disconnect_properties,
    logger,
    make_client,
)
from edgecam.publish.mqtt.delivery import Delivery, StateCache
from edgecam.publish.mqtt.discovery import Description
from edgecam.publish.mqtt.link import Link
from edgecam.publish.mqtt.memory import RegionMemory
from edgecam.publish.mqtt.memory import default_path as memory_path
from edgecam.publish.mqtt.outbox import Entry, Outbox, default_path
from edgecam.publish.mqtt.properties import JSON, TEXT, MessageProperties
from edgecam.publish.mqtt.pump import WINDOW, OutboxPump
from edgecam.publish.mqtt.rejects import RejectLog
from edgecam.publish.mqtt.results import Queued, ResultQueue
from edgecam.publish.mqtt.topics import OFFLINE, ONLINE, Topics
from edgecam.publish.mqtt.worker import EventWorker
from edgecam.publish.sink import Sink
from edgecam.result import Result, encode_json

_FLUSH_BATCH = 64
_EVENT_QUEUE = 64  # delivery events waiting (pump, connected, refresh: rare or deduplicated)


def make_outbox(config: Config) -> Outbox:
    cfg = config.mqtt.outbox
    path = None
    if cfg.enabled:
        path = default_path(config.device_id) if cfg.path is None else Path(cfg.path).expanduser()
    return Outbox(path, cfg.max_bytes, cfg.result_share)


class MqttSink(Sink):
    """Publishes to one broker. ``control`` (the daemon) enables commands and fresh state."""

    name = "mqtt"

    def __init__(self, config: Config, control: DaemonControl | None = None, *,
                 discovery_delay_s: tuple[float, float] = (1.0, 5.0), outbox: Outbox | None = None,
                 wait_for_description: bool = False) -> None:
        """``wait_for_description``: announce nothing to Home Assistant before ``describe()``
        (the daemon: its models, and so the regions' labels, are not loaded yet)."""
        self._config = config
        self._cfg = config.mqtt
        self._topics = Topics.from_config(config)
        self._props = MessageProperties(self._cfg.protocol == "5", config.device_id)
        self._results = ResultQueue(self._cfg.queue_size, self._cfg.result_expiry_s)
        self.outbox = outbox if outbox is not None else make_outbox(config)
        self.memory = RegionMemory(memory_path(config))  # each region's last state, for the next start
        self._stopping = False
        self._pump_posted = False
        self._counts = {"published": 0, "errors": 0, "connect_failures": 0, "connects": 0}
        self._fail_log = FailureLog()
        commands_on = self._cfg.commands.enabled and control is not None
        paho_queue = self._cfg.queue_size + self._cfg.commands.queue_size + WINDOW
        self._link = Link(make_client(config, self._topics, self._props, paho_queue))
        self._pump = OutboxPump(self.outbox, self._publish_entry)
        self._state = StateCache(control)
        self._delivery = Delivery(config, self._link, self._topics, self._props, self.outbox, self._pump,
                                  self._state, self._flush, commands_on, discovery_delay_s,
                                  announced.Announced(announced.default_path(config)),
                                  None if wait_for_description else Description(config),
                                  control.snapshot_jpeg if control is not None else None)
        self._delivery_worker = EventWorker("edgecam-mqtt", self._on_delivery_event, _EVENT_QUEUE,
                                            self._delivery.idle, self._delivery.wait_s)
        self._commands = CommandHandler(self._cfg.commands, control, self._link, self._topics, self._props,
                                        self._state, RejectLog(), camera_images=self._cfg.discovery.enabled)
        self._command_worker = EventWorker("edgecam-mqtt-cmd", self._commands.handle, self._cfg.commands.queue_size,
                                           self._commands.idle)
        client = self._link.client
        client.on_connect, client.on_connect_fail = self._on_connect, self._on_connect_fail
        client.on_disconnect, client.on_message, client.on_publish = \
            self._on_disconnect, self._on_message, self._on_publish

    def __repr__(self) -> str:
        return f"MqttSink({self._cfg.host}:{self._cfg.port}, client_id={self._config.client_id!r})"

    # ----------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Begin connecting in the background; never blocks on, or fails for, a missing broker."""
        self.outbox.open()
        self._delivery_worker.start()
        self._command_worker.start()
        self._link.client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s,
                                        properties=connect_properties(self._cfg))
        self._link.client.loop_start()
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
        self._command_worker.stop(timeout_s)
        if self._link.connected:
            self._finish_outbox(timeout_s)
            info = self._link.publish(self._topics.status, OFFLINE, 1, True, self._props.get(TEXT))
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
        self._delivery_worker.stop(timeout_s)
        self._link.down()
        self.outbox.close()

    def _finish_outbox(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.outbox) and self._link.connected and time.monotonic() < deadline:
            self._delivery.run_pump()
            time.sleep(0.02)

    def _log_leftovers(self) -> None:
        with self._link.lock:
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
        self._link.client.disconnect(properties=disconnect_properties(self._cfg))
        self._link.client.loop_stop()

    # ----------------------------------------------------------- public state
    @property
    def connected(self) -> bool:
        """True while the broker session is up (CONNACK accepted)."""
        return self._link.connected

    @property
    def topics(self) -> Topics:
        return self._topics

    def counters(self) -> dict[str, Any]:
        """Results queued/dropped/expired/published, publish errors, connections, the outbox,
        commands handled and rejected (by kind)."""
        with self._link.lock:
            counts = {"queued": len(self._results), "dropped": self._results.dropped,
                      "expired": self._results.expired, **self._counts, "connected": self._link.connected}
        counts["errors"] += self._link.errors
        outbox = self.outbox.counters()
        outbox.update(in_flight=self._pump.in_flight, delivered=self._pump.delivered, refused=self._pump.refused)
        return {**counts, "outbox": outbox, "commands": self._commands.counters()}

    def refresh(self) -> None:
        """Publish discovery and state again (the models changed: new labels, new names)."""
        self._delivery_worker.post(("refresh",))

    def describe(self, config: Config, labels: dict[str, list[str]], models: dict[str, str]) -> None:
        """What runs now (after the start and every change): the config, and per ``camera/region``
        its model's labels and name. Discovery is sent again, and what is gone cleaned up."""
        self._delivery.describe(Description(config, labels, models))
        self.memory.keep_only({f"{camera}/{region}" for camera, cfg in config.camera_configs().items()
                               for region in cfg.regions})
        self.refresh()

    # ----------------------------------------------------------- Sink API
    def publish_result(self, result: Result) -> None:
        payload = encode_json(result.to_payload())
        topic = self._topics.result_for(result.camera, result.region)
        if result.durable:  # admitted by on_change: a state change, kept until acknowledged
            self.outbox.append(topic, payload, False, result.camera, result.region)
            self._post_pump()
            return
        item = Queued(topic, payload, result.camera, result.region, result.captured_mono)
        with self._link.lock:
            if self._link.online and self._send_result(item):
                return
            self._link.online = False
            self._results.push(item)

    def publish_region_state(self, state: dict[str, Any]) -> None:
        """Retained, QoS 1, through the outbox; the latest per region is re-sent after every reconnect."""
        topic = self._topics.region_state(state["camera"], state["region"])
        payload = encode_json(state)
        self.memory.remember(state)
        self._delivery.remember_region_state(topic, payload, state["camera"], state["region"])
        self.outbox.append(topic, payload, True, state["camera"], state["region"])
        self._post_pump()
        if self._cfg.discovery.enabled and self._cfg.discovery.snapshot_on_change:
            self._delivery_worker.post(("snapshot", state["camera"]))  # (a full queue: no picture this time)

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """Not queued while disconnected: a stale stats snapshot is worthless."""
        if self._link.connected:
            self._link.send(self._topics.stats, encode_json(stats), 0, False, self._props.get(JSON))

    def publish_state(self, state: dict[str, Any]) -> None:
        self._state.remember(state)
        if self._link.connected:
            self._link.send(self._topics.state, encode_json(state), 1, True, self._props.get(JSON))
        self._delivery.send_camera_topics(state)

    # ----------------------------------------------------------- sending
    def _send_result(self, item: Queued) -> bool:
        """Hand one result to paho (lock held). False means "not connected after all": keep it."""
        left = self._results.time_left(item)
        if left is not None and left <= 0:
            return True  # expired: counted, never sent
        qos = self._cfg.qos
        props = (self._props.get(JSON, item.camera, item.region) if left is None else
                 self._props.expiring(JSON, item.camera, item.region, left))
        info = self._link.publish(item.topic, item.payload, qos, False, props)
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

    def _publish_entry(self, entry: Entry, retain: bool) -> mqtt.MQTTMessageInfo:
        return self._link.publish(entry.topic, entry.payload, 1, retain,
                                  self._props.get(JSON, entry.camera, entry.region))

    def _flush(self) -> None:
        """Send queued results in order, in batches so the publisher thread is not held up."""
        while True:
            with self._link.lock:
                if not self._link.session_ready:
                    return
                if not self._results.pending:
                    self._link.online = True
                    return
                for _ in range(min(_FLUSH_BATCH, len(self._results))):
                    item = self._results.pop()
                    if item is not None and not self._send_result(item):
                        self._results.push_front(item)
                        return

    def _post_pump(self) -> None:
        if not self._pump_posted:
            self._pump_posted = True
            if not self._delivery_worker.post(("pump",)):
                self._pump_posted = False  # the next idle tick pumps anyway

    def _on_delivery_event(self, event: tuple[Any, ...]) -> None:
        if event[0] == "pump":
            self._pump_posted = False
        self._delivery.handle(event)

    # ----------------------------------------------------------- paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._counts["connect_failures"] += 1
            self._fail_log(f"MQTT connection refused by broker {self._cfg.host}:{self._cfg.port}: {reason}")
            return
        requeued = 0
        with self._link.lock:
            self._link.connected, self._link.session_ready, self._link.online = True, False, False
            self._counts["connects"] += 1
            try:
                # paho would now resend what it still holds from the last connection, AFTER this
                # callback: racing what the worker sends next. Drop it; the outbox and the result
                # queue resend their part in order (retained topics are republished anyway).
                client.drop_out_messages()
                requeued = self._results.requeue_unacked()
            except Exception:  # noqa: BLE001 - never leave the flags half-set: that would stall the sink
                logger.exception("MQTT: resetting after the reconnect failed")
        self._fail_log.reset()
        logger.info("MQTT: connected to %s:%d%s", self._cfg.host, self._cfg.port,
                    f" ({requeued} unacknowledged result(s) queued again)" if requeued else "")
        check_broker(props if self._props.enabled else None, self._cfg.host, self._cfg.port)
        if not self._delivery_worker.post(("connected",)):
            logger.error("MQTT: the delivery worker's queue is full; the session is not republished")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` block: the exception is current.
        self._counts["connect_failures"] += 1
        what = describe_connect_error(sys.exc_info()[1])
        self._fail_log(f"MQTT: cannot connect to broker {self._cfg.host}:{self._cfg.port}: {what}")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._link.down() and not self._stopping:
            logger.warning("MQTT: connection to %s:%d lost (%s); reconnecting",
                           self._cfg.host, self._cfg.port, reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # Called with paho's message lock held: no lock of ours here, only flags and a post.
        if getattr(reason, "is_failure", False):
            self._pump.refusals[mid] = str(reason)
        if self._pump.in_flight:
            self._post_pump()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._topics.cmd:
            event = ("retained", message.topic, len(message.payload)) if message.retain else \
                ("command", bytes(message.payload))
            if not self._command_worker.post(event):
                self._commands.busy(bytes(message.payload), self._command_worker.waiting)
        elif message.topic == self._topics.ha_status:
            if message.payload.strip() == ONLINE.encode():
                self._delivery.ha_online()
        else:  # Home Assistant's switch or button: the ordinary command, on the command worker
            command = cameras.ha_command(self._topics, message.topic, bytes(message.payload))
            if command is not None and not message.retain and not self._command_worker.post(("command", command)):
                self._commands.busy(command, self._command_worker.waiting)
