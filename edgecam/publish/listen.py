"""``edgecam listen``: watch the results devices publish, as a table or JSON lines.

Examples::

    edgecam listen                          # every device on localhost:1883
    edgecam listen --device cam1 --json     # one device, raw JSON lines
    edgecam listen --count 3 --json         # exit after 3 results (scripts, tests)
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time
import uuid
from typing import Any, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgecam.config import TlsConfig
from edgecam.errors import ConfigError
from edgecam.publish.mqtt import configure_tls, describe_connect_error

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
    p.add_argument("--count", type=int, default=0, metavar="N", help="exit after N results")
    p.add_argument("--timeout", type=float, default=0.0, metavar="S",
                   help="give up (exit 1) after S seconds without reaching --count")
    p.add_argument("--username", help="broker user name")
    p.add_argument("--password-env", metavar="VAR", help="environment variable holding the password")
    p.add_argument("--tls", action="store_true", help="use TLS with the system CAs")
    p.add_argument("--tls-ca", metavar="FILE", help="use TLS, trusting this CA certificate")
    p.set_defaults(func=run)


def format_line(payload: dict[str, Any]) -> str:
    """One readable line: device, seq, Top-1, Top-3, latency total/inference."""
    top = payload.get("top") or []
    first = top[0] if top else {"label": "-", "score": 0.0}
    top3 = " | ".join(f"{t['label'][:18]} {t['score']:.2f}" for t in top[:3])
    lat = payload.get("latency_ms", {})
    return (f"{payload.get('device', '?'):<14} #{payload.get('seq', '?'):<7} "
            f"{first['label'][:24]:<24} {first['score']:6.3f}   [{top3}]   "
            f"{lat.get('total', 0.0):7.1f}/{lat.get('inference', 0.0):.1f} ms")


def _make_client(args: argparse.Namespace, events: "queue.Queue[tuple[str, Any]]") -> mqtt.Client:
    if args.password_env and not args.username:
        raise ConfigError("--password-env needs --username")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edgecam-listen-{uuid.uuid4().hex[:8]}")
    if args.username:
        password = None
        if args.password_env:
            password = os.environ.get(args.password_env)
            if password is None:
                raise ConfigError(f"--password-env: environment variable {args.password_env} is not set")
        client.username_pw_set(args.username, password)
    if args.tls or args.tls_ca:
        configure_tls(client, TlsConfig(enabled=True, ca_file=args.tls_ca))
    client.reconnect_delay_set(1, 10)
    topics = [(f"{args.prefix}/{args.device}/result", 0), (f"{args.prefix}/{args.device}/status", 0)]

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            events.put(("fatal" if str(reason) in _FATAL_REFUSALS else "error",
                        f"connection refused by broker {args.host}:{args.port}: {reason}"))
        else:
            c.subscribe(topics)
            events.put(("connected", f"listening on {args.host}:{args.port} for {topics[0][0]}"))

    def on_connect_fail(_c: mqtt.Client, _u: Any) -> None:
        what = describe_connect_error(sys.exc_info()[1])
        events.put(("error", f"cannot connect to MQTT broker {args.host}:{args.port}: {what}; retrying"))

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        events.put(("status" if msg.topic.endswith("/status") else "result", (msg.topic, bytes(msg.payload))))

    client.on_connect, client.on_connect_fail, client.on_message = on_connect, on_connect_fail, on_message
    return client


def _show(kind: str, data: Any, as_json: bool) -> bool:
    """Print one event; True when it was a valid result."""
    if kind == "status":
        topic, payload = data
        print(f"{topic}: {payload.decode('utf-8', 'replace')}", file=sys.stderr if as_json else sys.stdout,
              flush=True)
        return False
    topic, payload = data
    try:
        obj = json.loads(payload)
        line = json.dumps(obj, separators=(",", ":")) if as_json else format_line(obj)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        print(f"edgecam listen: ignoring malformed result on {topic}: {err}", file=sys.stderr, flush=True)
        return False
    print(line, flush=True)
    return True


def run(args: argparse.Namespace) -> int:
    if args.count < 0 or args.timeout < 0:
        raise ConfigError("--count and --timeout must not be negative")
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client = _make_client(args, events)
    client.connect_async(args.host, args.port, keepalive=30)
    client.loop_start()
    deadline: Optional[float] = time.monotonic() + args.timeout if args.timeout else None
    seen, last_error = 0, ""
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
            seen += _show(kind, data, args.json)
            if args.count and seen >= args.count:
                return 0
        if not args.count:
            return 0
        print(f"edgecam listen: timed out after {args.timeout:g} s ({seen} of {args.count} results)",
              file=sys.stderr)
        return 1
    finally:
        client.disconnect()
        client.loop_stop()
