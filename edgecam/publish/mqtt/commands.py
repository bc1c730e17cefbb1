"""Remote commands on ``<prefix>/cmd``: parsing (pure) and execution.

Payload: a JSON object ``{"cmd": NAME, "id": optional str|int, ...}`` with NAME

* ``pause`` / ``resume``  stop / restart classifying (``"camera": NAME`` for one camera);
* ``snapshot``            publish the latest annotated JPEG on ``<prefix>/snapshot``
  (``"camera": NAME``, default the first);
* ``set``                 change runtime settings, daemon-wide, e.g.
  ``{"cmd": "set", "min_score": 0.3, "policy": "on_change", "max_fps": 5, "smoothing": 3}``,
  or of one region: ``{"cmd": "set", "camera": "garage", "region": "door", "confirm": 5}``;
* ``status``              republish the retained state;
* ``reload``              reload every model file that changed on disk (as SIGHUP does);
* ``capture``             save a region's crop of the newest frame as a training sample:
  ``{"cmd": "capture", "camera": "garage", "region": "door", "label": "open"}`` (no label: the inbox).

Every command gets one reply on ``<prefix>/cmd/response``:
``{"ok": true, "cmd": ..., "id": ..., ...}`` or ``{"ok": false, "error": "..."}``.

``parse_command`` only parses and validates (no I/O, property-tested);
``handle_command`` never raises, so a hostile payload cannot hurt the MQTT thread.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

from edgecam.errors import ConfigError, EdgecamError
from edgecam.control.protocol import DaemonControl
from edgecam.config.cameras import NAME_PATTERN
from edgecam.result import encode_json
from edgecam.control.settings import REGION_SETTINGS, SETTINGS, check_region_setting, check_setting

logger = logging.getLogger(__name__)

#: Rejected commands are logged at most this often (with a count of the rest), so a
#: client hammering the topic with junk cannot flood the journal. Each still gets a reply.
REJECT_LOG_INTERVAL_S = 10.0

CommandId = Union[str, int]
COMMANDS = ("pause", "resume", "snapshot", "set", "status", "capture", "reload")
# The keys naming what a command acts on, besides its settings.
TARGETS: dict[str, tuple[str, ...]] = {"pause": ("camera",), "resume": ("camera",), "snapshot": ("camera",),
                                       "set": ("camera", "region"), "status": (),
                                       "capture": ("camera", "region", "label"), "reload": ()}
MAX_ID_CHARS = 128



@dataclass(frozen=True)
class Command:
    cmd: str
    id: Optional[CommandId] = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    camera: Optional[str] = None
    region: Optional[str] = None


class CommandError(ValueError):
    """A rejected command; ``cmd`` and ``id`` are echoed when they were readable."""

    def __init__(self, message: str, cmd: Optional[str] = None, id: Optional[CommandId] = None) -> None:
        super().__init__(message)
        self.cmd = cmd
        self.id = id


@dataclass
class Outcome:
    """What the MQTT side must send: always a reply, maybe a snapshot / a new state."""

    reply: dict[str, Any]
    snapshot: Optional[bytes] = None
    state: Optional[dict[str, Any]] = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _decode(payload: bytes, max_bytes: int) -> Any:
    if not isinstance(payload, (bytes, bytearray)):
        raise CommandError(f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > max_bytes:
        raise CommandError(f"payload too large ({len(payload)} bytes > {max_bytes})")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as err:
        raise CommandError(f"payload is not valid UTF-8 (byte {err.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise CommandError(f"invalid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    except ValueError as err:  # NaN / Infinity
        raise CommandError(f"invalid JSON: {err}") from None
    except RecursionError:
        raise CommandError("invalid JSON: nested too deeply") from None


def _read_id(obj: dict[str, Any]) -> Optional[CommandId]:
    value = obj.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CommandError(f"id must be a string or an integer, got {type(value).__name__}")
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise CommandError(f"id longer than {MAX_ID_CHARS} characters")
    return value


def _check_setting(key: str, value: Any, cmd: str, cid: Optional[CommandId], region: bool) -> Any:
    try:
        return check_region_setting(key, value) if region else check_setting(key, value)
    except ConfigError as err:
        raise CommandError(str(err), cmd, cid) from None


def _read_targets(obj: dict[str, Any], cmd: str, cid: Optional[CommandId]) -> dict[str, str]:
    targets = {}
    for key in TARGETS[cmd]:
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
            raise CommandError(f"{key} must be a {key} name (letters, digits, '_', '-')", cmd, cid)
        targets[key] = value
    if cmd == "set" and len(targets) == 1:
        raise CommandError("'set' takes camera and region together (a region's settings) or neither", cmd, cid)
    if cmd == "capture" and not {"camera", "region"} <= set(targets):
        raise CommandError("'capture' needs a camera and a region (and optionally a label)", cmd, cid)
    return targets


def parse_command(payload: bytes, max_bytes: int = 4096) -> Command:
    """Parse and validate one command payload. Raises CommandError naming the problem."""
    obj = _decode(payload, max_bytes)
    if not isinstance(obj, dict):
        raise CommandError(f"command must be a JSON object, got {type(obj).__name__}")
    cid = _read_id(obj)
    cmd = obj.get("cmd")
    if not isinstance(cmd, str):
        raise CommandError("missing 'cmd' (a string)" if cmd is None else
                           f"'cmd' must be a string, got {type(cmd).__name__}", None, cid)
    if cmd not in COMMANDS:
        raise CommandError(f"unknown command {cmd[:64]!r} (expected one of {', '.join(COMMANDS)})", None, cid)
    targets = _read_targets(obj, cmd, cid)
    rest = {k: v for k, v in obj.items() if k not in ("cmd", "id", *TARGETS[cmd])}
    if cmd != "set":
        if rest:
            raise CommandError(f"unexpected key(s) for {cmd!r}: {', '.join(sorted(rest))[:200]}", cmd, cid)
        label = {"label": targets["label"]} if "label" in targets else {}
        return Command(cmd, cid, label, targets.get("camera"), targets.get("region"))
    region = "region" in targets
    if not rest:
        names = REGION_SETTINGS if region else SETTINGS
        raise CommandError(f"'set' needs at least one of {', '.join(names)}", cmd, cid)
    settings = {key: _check_setting(key, value, cmd, cid, region) for key, value in rest.items()}
    return Command(cmd, cid, settings, targets.get("camera"), targets.get("region"))


def error_reply(err: CommandError) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": False, "error": str(err)}
    if err.cmd is not None:
        reply["cmd"] = err.cmd
    if err.id is not None:
        reply["id"] = err.id
    return reply


def execute(command: Command, control: DaemonControl) -> Outcome:
    """Run a parsed command against the daemon. Raises CommandError / EdgecamError."""
    reply: dict[str, Any] = {"ok": True, "cmd": command.cmd}
    if command.id is not None:
        reply["id"] = command.id
    outcome = Outcome(reply)
    if command.camera is not None:
        reply["camera"] = command.camera
    if command.region is not None:
        reply["region"] = command.region
    if command.cmd in ("pause", "resume"):
        (control.pause if command.cmd == "pause" else control.resume)(command.camera)
        if command.camera is None:
            reply["paused"] = bool(control.paused)
        else:
            reply["paused"] = bool(control.state()["cameras"][command.camera]["paused"])
    elif command.cmd == "set":
        reply["settings"] = control.apply_settings(dict(command.settings), command.camera, command.region)
    elif command.cmd == "reload":
        outcome_reply = control.reload_models()
        reply.update(outcome_reply)
        if outcome_reply["errors"]:
            reply["ok"] = False
            reply["error"] = "; ".join(f"{name}: {error}" for name, error in outcome_reply["errors"].items())
    elif command.cmd == "capture":
        assert command.camera is not None and command.region is not None
        reply.update(control.capture_sample(command.camera, command.region, command.settings.get("label")))
    elif command.cmd == "snapshot":
        jpeg = control.snapshot_jpeg(command.camera)
        if jpeg is None:
            raise CommandError("no snapshot available yet (no result so far)", command.cmd, command.id)
        outcome.snapshot = bytes(jpeg)
        reply["bytes"] = len(jpeg)
    if command.cmd != "snapshot":
        outcome.state = control.state()
        if command.cmd == "status":
            reply["state"] = outcome.state
    return outcome


def handle_command(payload: bytes, control: Optional[DaemonControl], max_bytes: int,
                   reject_log: Optional[Callable[[CommandError], None]] = None) -> Outcome:
    """Parse + execute; every failure becomes an error reply and one log line. Never raises."""
    command: Optional[Command] = None
    try:
        command = parse_command(payload, max_bytes)
        if control is None:
            raise CommandError("commands are not available (no daemon control)", command.cmd, command.id)
        return execute(command, control)
    except CommandError as err:
        (reject_log or _log_rejected)(err)
        return Outcome(error_reply(err))
    except EdgecamError as err:
        logger.warning("MQTT command %r failed: %s", command.cmd if command else "?", err)
        return Outcome(error_reply(CommandError(str(err), command.cmd if command else None,
                                                command.id if command else None)))
    except Exception as err:  # a bug in the daemon must not kill the MQTT worker
        logger.exception("MQTT command %r crashed", command.cmd if command else "?")
        return Outcome(error_reply(CommandError(f"internal error: {type(err).__name__}: {err}",
                                                command.cmd if command else None,
                                                command.id if command else None)))


def _log_rejected(err: CommandError) -> None:
    logger.warning("Rejected MQTT command: %s", err)


class RejectLog:
    """At most one warning per ``interval_s`` for rejected commands, then a count
    (the MQTT sink keeps one, so junk on the command topic cannot flood the journal)."""

    def __init__(self, interval_s: float = REJECT_LOG_INTERVAL_S) -> None:
        self._interval = interval_s
        self._last = float("-inf")
        self._suppressed = 0

    def __call__(self, err: CommandError) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more rejected since the last report)" if self._suppressed else ""
        logger.warning("Rejected MQTT command: %s%s", err, more)
        self._last, self._suppressed = now, 0



def encode_reply(reply: Mapping[str, Any]) -> bytes:
    return encode_json(dict(reply))
