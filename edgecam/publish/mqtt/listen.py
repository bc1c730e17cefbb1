"""``edgecam listen``: watch what devices publish, as a table or JSON lines.

Examples::

    edgecam listen                          # every device on localhost:1883
    edgecam listen --device cam1 --json     # one device, raw JSON lines
    edgecam listen --count 3 --json         # exit after 3 results (scripts, tests)
    edgecam listen --states --json          # region state changes too
    edgecam listen --camera garage --region door   # one camera's region
    edgecam listen --share workers --json   # one of several consumers sharing a fleet's load

With ``--share GROUP`` the consumers of one group split the messages (MQTT 5
shared subscriptions, ``$share/GROUP/...``): each message goes to one of them.
Give each consumer a fixed ``--client-id`` and ``--session-expiry`` so the
broker keeps its share while it restarts.

Whatever a payload holds is printed as text, never as terminal commands: control
and format characters (escape sequences, bidirectional overrides) are shown
escaped, e.g. ``\x1b``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time
import unicodedata
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgecam.config import TlsConfig
from edgecam.config.cameras import NAME_PATTERN
from edgecam.errors import ConfigError
from edgecam.publish.mqtt.connection import configure_tls, describe_connect_error

_FATAL_REFUSALS = ("Not authorized", "Bad user name or password")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("listen", help="print the results edgecam devices publish on MQTT",
                              description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="localhost", help="broker host (default: localhost)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default: 1883)")
    p.add_argument("--device", default="+", help="device id, or + for all (default: +)")
    p.add_argument("--prefix", default="edgecam", help="topic root before the device id (default: edgecam)")
    p.add_argument("--json", action="store_true", help="print raw JSON lines instead of a table")
    p.add_argument("--states", action="store_true", help="print region state changes too (…/<camera>/<region>/state)")
    p.add_argument("--camera", help="only this camera's results (and states)")
    p.add_argument("--region", help="only this region's results (and states)")
    p.add_argument("--count", type=int, default=0, metavar="N", help="exit after N results (and states)")
    p.add_argument("--timeout", type=float, default=0.0, metavar="S",
                   help="give up (exit 1) after S seconds without reaching --count")
    p.add_argument("--share", metavar="GROUP",
                   help="join the shared subscription GROUP: the group's consumers split the messages (MQTT 5)")
    p.add_argument("--qos", type=int, choices=(0, 1), default=1, help="subscription QoS (default: 1)")
    p.add_argument("--protocol", choices=("3.1.1", "5"),
                   help="MQTT version (default: 5 with --share or --session-expiry, else 3.1.1)")
    p.add_argument("--client-id", help="MQTT client id (default: edgecam-listen-<random>)")
    p.add_argument("--session-expiry", type=int, default=0, metavar="S",
                   help="MQTT 5: the broker keeps this consumer's session, and queues its messages, for S "
                        "seconds after it disconnects (needs a fixed --client-id)")
    p.add_argument("--username", help="broker user name")
    p.add_argument("--password-env", metavar="VAR", help="environment variable holding the password")
    p.add_argument("--tls", action="store_true", help="use TLS with the system CAs")
    p.add_argument("--tls-ca", metavar="FILE", help="use TLS, trusting this CA certificate")
    p.set_defaults(func=run)


_UNSAFE = ("Cc", "Cf", "Cs", "Zl", "Zp")  # control, format (bidi overrides), surrogates, line breaks
HEADER = (f"{'device':<14} {'camera':<12} {'region':<12} {'seq':<8} {'label':<24} {'score':>6}"
          "   [top 3]   total/inference")


def clean(value: Any) -> str:
    """``value`` as text a terminal only displays: None is "-", and every control or format
    character is escaped (``\\x1b``, ``\\u202e``), so a payload cannot move the cursor,
    recolour, retitle or reorder the terminal."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _UNSAFE else c for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def format_line(payload: dict[str, Any]) -> str:
    """One row: device, camera, region, seq, Top-1 and its score, Top-3, latency total/inference."""
    top = payload.get("top") or []
    first = top[0] if top else {"label": None, "score": 0.0}
    top3 = " | ".join(f"{clean(t['label'])[:18]} {t['score']:.2f}" for t in top[:3])
    lat = payload.get("latency_ms") or {}
    return (f"{_where(payload)} #{clean(payload.get('seq')):<7} "
            f"{clean(first['label'])[:24]:<24} {first['score']:6.3f}   [{top3}]   "
            f"{lat.get('total', 0.0):7.1f}/{lat.get('inference', 0.0):.1f} ms")


def format_state(payload: dict[str, Any]) -> str:
    """One row for a region state change: device, camera, region, previous -> new (score) since."""
    return (f"{_where(payload)} {clean(payload.get('previous'))} -> {clean(payload['label'])} "
            f"({payload.get('score', 0.0):.3f}) since {clean(payload.get('since'))}")


def _where(payload: dict[str, Any]) -> str:
    return (f"{clean(payload.get('device'))[:14]:<14} {clean(payload.get('camera'))[:12]:<12} "
            f"{clean(payload.get('region'))[:12]:<12}")


def wanted(payload: dict[str, Any], args: argparse.Namespace) -> bool:
    """True when the message passes ``--camera`` and ``--region``."""
    return ((args.camera is None or payload.get("camera") == args.camera)
            and (args.region is None or payload.get("region") == args.region))


def _check_args(args: argparse.Namespace) -> str:
    """Validate the options; returns the MQTT version to use."""
    if args.count < 0 or args.timeout < 0 or args.session_expiry < 0:
        raise ConfigError("--count, --timeout and --session-expiry must not be negative")
    if args.password_env and not args.username:
        raise ConfigError("--password-env needs --username")
    if args.share is not None and (not args.share or any(c in args.share for c in "/+#")):
        raise ConfigError("--share: a group name is non-empty, without '/', '+' or '#'")
    for option in ("camera", "region"):
        value = getattr(args, option)
        if value is not None and not NAME_PATTERN.fullmatch(value):
            raise ConfigError(f"--{option}: {clean(value)!r} is not a {option} name "
                              "(1-64 letters, digits, '_' or '-')")
    needs_5 = args.share is not None or args.session_expiry > 0
    if needs_5 and args.protocol == "3.1.1":
        raise ConfigError("--share and --session-expiry need MQTT 5 (--protocol 5)")
    if args.session_expiry and not args.client_id:
        raise ConfigError("--session-expiry needs a fixed --client-id (a new id starts a new session)")
    return args.protocol or ("5" if needs_5 else "3.1.1")


def subscriptions(args: argparse.Namespace) -> list[tuple[str, bool]]:
    """(topic filter, shared) pairs: results (and states) shared with --share, status never."""
    base = f"{args.prefix}/{args.device}"
    where = f"{args.camera or '+'}/{args.region or '+'}"
    data = [f"{base}/result", f"{base}/{where}/result"] + ([f"{base}/{where}/state"] if args.states else [])
    if args.share:
        data = [f"$share/{args.share}/{topic}" for topic in data]
    return [(topic, bool(args.share)) for topic in data] + [(f"{base}/status", False)]


def _make_client(args: argparse.Namespace, v5: bool, events: queue.Queue[tuple[str, Any]]) -> mqtt.Client:
    # manual_ack: a QoS 1 message is acknowledged only once its line is on stdout, so a consumer
    # killed with messages still in its queue gets them again (with a kept session), or another does.
    client_id = args.client_id or f"edgecam-listen-{uuid.uuid4().hex[:8]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, manual_ack=True)
    if args.username:
        password = None
        if args.password_env:
            password = os.environ.get(args.password_env)
            if password is None:
                raise ConfigError(f"--password-env: environment variable {args.password_env} is not set")
        client.username_pw_set(args.username, password)
    if args.tls or args.tls_ca:
        configure_tls(client, TlsConfig(enabled=True, ca_file=args.tls_ca))
    client.reconnect_delay_set(0.5, 10)  # type: ignore[arg-type]
    subs = subscriptions(args)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            events.put(("fatal" if str(reason) in _FATAL_REFUSALS else "error",
                        f"connection refused by broker {args.host}:{args.port}: {reason}"))
        elif args.share and v5 and getattr(props, "SharedSubscriptionAvailable", 1) == 0:
            events.put(("fatal", f"broker {args.host}:{args.port} does not support shared subscriptions"))
        else:
            # Always subscribe, even when the broker says it kept our session: Mosquitto 2.0
            # restores a persistent session after a restart, but not its shared subscriptions.
            c.subscribe([_subscription(topic, shared, args.qos, v5) for topic, shared in subs])

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        refused = [(topic, code) for (topic, _), code in zip(subs, codes) if code.is_failure]
        if refused:
            events.put(("fatal", "broker refused " + ", ".join(f"{t} ({c})" for t, c in refused)))
        else:
            events.put(("connected", f"listening on {args.host}:{args.port} for {subs[0][0]}"))

    def on_connect_fail(_c: mqtt.Client, _u: Any) -> None:
        what = describe_connect_error(sys.exc_info()[1])
        events.put(("error", f"cannot connect to MQTT broker {args.host}:{args.port}: {what}; retrying"))

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        kind = "status" if msg.topic.endswith("/status") else "state" if msg.topic.endswith("/state") else "result"
        events.put((kind, (msg.topic, bytes(msg.payload), msg.mid, msg.qos)))

    client.on_connect, client.on_connect_fail, client.on_message = on_connect, on_connect_fail, on_message
    client.on_subscribe = on_subscribe
    return client


def _subscription(topic: str, shared: bool, qos: int, v5: bool) -> tuple[str, Any]:
    if not v5:
        return topic, qos
    # Retained messages are last values, not events: a shared group must not get them again at
    # every (re)subscribe (Mosquitto before 2.0.13 sends them to shared subscriptions).
    return topic, SubscribeOptions(qos=qos, retainHandling=2 if shared else 0)


class Printer:
    """Prints events as table rows (a header first) or JSON lines, after the filters."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.header_shown = False

    def show(self, kind: str, data: Any) -> bool:
        """Print one event; True when it was a valid result or state that passed the filters."""
        topic, payload = data[:2]
        if kind == "status":
            print(f"{clean(topic)}: {clean(payload.decode('utf-8', 'replace'))}",
                  file=sys.stderr if self.args.json else sys.stdout, flush=True)
            return False
        try:
            obj = json.loads(payload, parse_constant=_refuse_constant)
            if not isinstance(obj, dict):
                raise TypeError(f"a JSON {type(obj).__name__}, not an object")
            if not wanted(obj, self.args):
                return False
            if self.args.json:  # ensure_ascii: every control character (and all non-ASCII) escaped
                line = json.dumps(obj, separators=(",", ":"))
            else:
                line = format_state(obj) if kind == "state" else format_line(obj)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
            print(f"edgecam listen: ignoring malformed {kind} on {clean(topic)}: {clean(err)}", file=sys.stderr,
                  flush=True)
            return False
        if not self.args.json and not self.header_shown:
            print(HEADER, flush=True)
            self.header_shown = True
        print(line, flush=True)
        return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _connect_properties(args: argparse.Namespace, v5: bool) -> Properties | None:
    if not (v5 and args.session_expiry):
        return None
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = args.session_expiry
    return props


def run(args: argparse.Namespace) -> int:
    v5 = _check_args(args) == "5"
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client = _make_client(args, v5, events)
    if v5:  # a persistent consumer resumes its session (and what was queued) even on its first connect
        client.connect_async(args.host, args.port, keepalive=30, clean_start=not args.session_expiry,
                             properties=_connect_properties(args, v5))
    else:
        client.connect_async(args.host, args.port, keepalive=30)
    client.loop_start()
    deadline: float | None = time.monotonic() + args.timeout if args.timeout else None
    seen, last_error = 0, ""
    printer = Printer(args)
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                kind, data = events.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind in ("error", "fatal", "connected"):
                if data != last_error:
                    print(f"edgecam listen: {data}", file=sys.stderr, flush=True)
                last_error = data if kind != "connected" else ""
                if kind == "fatal":
                    return 2
                continue
            seen += printer.show(kind, data)
            client.ack(data[2], data[3])
            if args.count and seen >= args.count:
                return 0
        if not args.count:
            return 0
        print(f"edgecam listen: timed out after {args.timeout:g} s ({seen} of {args.count} "
              f"{'messages' if args.states else 'results'})", file=sys.stderr)
        return 1
    finally:
        client.disconnect()
        client.loop_stop()
