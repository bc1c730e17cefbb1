"""Remote commands on ``<prefix>/cmd``: parsing (pure) and execution.

Payload: a JSON object ``{"cmd": NAME, "id": optional str|int, ...}`` with NAME

* ``pause`` / ``resume``  stop / restart classifying (``"camera": NAME`` for one camera);
* ``snapshot``            publish the latest annotated JPEG on ``<prefix>/snapshot``
  (``"camera": NAME``, default the first);
* ``set``                 change runtime settings, daemon-wide, e.g.
  ``{"cmd": "set", "min_score": 0.3, "policy": "on_change", "max_fps": 5, "smoothing": 3}``,
  or of one region: ``{"cmd": "set", "camera": "garage", "region": "door", "confirm": 5}``;
* ``status``              republish the retained state;
* ``reload``              re-read the config file and apply the difference live, with every model
  file that changed on disk (as SIGHUP does): the reply lists the changes and what needs a restart;
* ``config``              write a change into the config file and apply it live (only with
  ``mqtt.commands.config_writes: true``): ``{"cmd": "config", "set": {"cameras.garage.regions.door.box":
  [0.1, 0.2, 0.5, 0.9]}, "delete": ["cameras.garage.regions.old"]}``;
* ``capture``             save a region's crop of the newest frame as a training sample:
  ``{"cmd": "capture", "camera": "garage", "region": "door", "label": "open"}`` (no label: the inbox).

Every command gets one reply on ``<prefix>/cmd/response``:
``{"ok": true, "cmd": ..., "id": ..., ...}`` or ``{"ok": false, "error": "..."}``.

``parse_command`` only parses and validates (no I/O, property-tested);
``handle_command`` never raises, so a hostile payload cannot hurt the MQTT thread,
and says what kind of rejection each failure is (``rejects.KINDS``), for the log.
Commands run on their own worker (``command_worker.py``), never on the thread
that delivers state changes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgecam.config.cameras import NAME_PATTERN
from edgecam.control.edits import parse_edits
from edgecam.control.protocol import DaemonControl
from edgecam.control.settings import (
    REGION_SETTINGS,
    SETTINGS,
    check_region_setting,
    check_setting,
)
from edgecam.dataset.collector import CaptureRateLimited
from edgecam.errors import ConfigError, EdgecamError
from edgecam.result import encode_json

logger = logging.getLogger(__name__)

CommandId = str | int
COMMANDS = ("pause", "resume", "snapshot", "set", "status", "capture", "reload", "config")
# The keys naming what a command acts on, besides its settings.
TARGETS: dict[str, tuple[str, ...]] = {"pause": ("camera",), "resume": ("camera",), "snapshot": ("camera",),
                                       "set": ("camera", "region"), "status": (),
                                       "capture": ("camera", "region", "label"), "reload": (), "config": ()}
MAX_ID_CHARS = 128



@dataclass(frozen=True)
class Command:
    cmd: str
    id: CommandId | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    camera: str | None = None
    region: str | None = None


class CommandError(ValueError):
    """A rejected command; ``cmd`` and ``id`` are echoed when they were readable. ``kind``
    says why, for the log (a key of ``rejects.KINDS``)."""

    def __init__(self, message: str, cmd: str | None = None, id: CommandId | None = None,
                 kind: str = "malformed") -> None:
        super().__init__(message)
        self.cmd = cmd
        self.id = id
        self.kind = kind


@dataclass
class Outcome:
    """What the MQTT side must send: always a reply, maybe a snapshot / a new state.
    ``rejected`` is the kind of rejection (None: the command ran)."""

    reply: dict[str, Any]
    snapshot: bytes | None = None
    state: dict[str, Any] | None = None
    rejected: str | None = None


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


def _read_id(obj: dict[str, Any]) -> CommandId | None:
    value = obj.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CommandError(f"id must be a string or an integer, got {type(value).__name__}")
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise CommandError(f"id longer than {MAX_ID_CHARS} characters")
    return value


def _check_setting(key: str, value: Any, cmd: str, cid: CommandId | None, region: bool) -> Any:
    try:
        return check_region_setting(key, value) if region else check_setting(key, value)
    except ConfigError as err:
        raise CommandError(str(err), cmd, cid, "setting") from None


def _read_targets(obj: dict[str, Any], cmd: str, cid: CommandId | None) -> dict[str, str]:
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
    if cmd == "config":
        try:
            return Command(cmd, cid, parse_edits(rest))
        except ConfigError as err:
            raise CommandError(str(err), cmd, cid) from None
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
        # paused right after this command (not after whatever another client did since)
        reply["paused"] = bool((control.pause if command.cmd == "pause" else control.resume)(command.camera))
    elif command.cmd == "set":
        reply["settings"] = control.apply_settings(dict(command.settings), command.camera, command.region)
    elif command.cmd == "config":
        reply.update(control.edit_config(dict(command.settings)))  # written, then applied live
    elif command.cmd == "reload":
        reply.update(control.reload())  # the config file and changed model files; raises: nothing changed
    elif command.cmd == "capture":
        assert command.camera is not None and command.region is not None
        reply.update(control.capture_sample(command.camera, command.region, command.settings.get("label")))
    elif command.cmd == "snapshot":
        jpeg = control.snapshot_jpeg(command.camera)
        if jpeg is None:
            raise CommandError("no snapshot available yet (no result so far)", command.cmd, command.id, "failed")
        outcome.snapshot = bytes(jpeg)
        reply["bytes"] = len(jpeg)
    if command.cmd not in ("snapshot", "capture"):  # (those change nothing in the state)
        outcome.state = control.state()
        if command.cmd == "status":
            reply["state"] = outcome.state
    return outcome


def handle_command(payload: bytes, control: DaemonControl | None, max_bytes: int,
                   reject_log: Callable[[str, str], None] | None = None,
                   check_target: Callable[[Command], None] | None = None) -> Outcome:
    """Parse, check the targets, execute; every failure becomes an error reply and goes to
    ``reject_log(kind, message)`` (default: one log line each). Never raises."""
    command: Command | None = None
    log = reject_log or _log_rejected
    try:
        command = parse_command(payload, max_bytes)
        if control is None:
            raise CommandError("commands are not available (no daemon control)", command.cmd, command.id, "failed")
        if check_target is not None:
            check_target(command)
        return execute(command, control)
    except CommandError as err:
        log(err.kind, str(err))
        return Outcome(error_reply(err), rejected=err.kind)
    except EdgecamError as err:
        kind = _kind_of(err, command)
        name = command.cmd if command else "?"
        log(kind, f"{name!r}: {err}")
        return Outcome(error_reply(CommandError(str(err), command.cmd if command else None,
                                                command.id if command else None)), rejected=kind)
    except Exception as err:
        log("crashed", f"{command.cmd if command else '?'!r} crashed: {type(err).__name__}: {err}")
        logger.debug("MQTT command crash", exc_info=True)
        return Outcome(error_reply(CommandError(f"internal error: {type(err).__name__}: {err}",
                                                command.cmd if command else None,
                                                command.id if command else None)), rejected="crashed")


def _kind_of(err: EdgecamError, command: Command | None) -> str:
    if isinstance(err, CaptureRateLimited):
        return "rate"
    if isinstance(err, ConfigError) and command is not None and command.cmd == "set":
        return "setting"  # the daemon's own validation said no
    return "failed"


def _log_rejected(kind: str, message: str) -> None:
    logger.warning("Rejected MQTT command: %s", message)


def encode_reply(reply: Mapping[str, Any]) -> bytes:
    return encode_json(dict(reply))
