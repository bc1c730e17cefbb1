"""`edgecam run` and `edgecam check-config`."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional

from edgecam.config import Config, apply_overrides, load_config, resolve_default_model
from edgecam.errors import ModelError
from edgecam.logs import setup_logging

log = logging.getLogger(__name__)

DEFAULT_CONFIG_NAMES = ("config.yaml",)


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run the daemon: camera -> classifier -> MQTT/stdout")
    run.add_argument("--config", metavar="FILE",
                     help="YAML config (default: $EDGECAM_CONFIG, else ./config.yaml if present)")
    run.add_argument("--source", help="camera index, video file, rtsp/http URL, 'picamera2' or 'demo'")
    run.add_argument("--model", metavar="FILE", help="INT8/FP32 ONNX model built by `edgecam model build`")
    run.add_argument("--preview", action="store_true", help="show an annotated preview window")
    run.add_argument("--no-mqtt", action="store_true", help="results as JSON lines on stdout, logs on stderr")
    run.add_argument("--stdout", action="store_true", help="also print results on stdout when MQTT is on")
    run.add_argument("--mqtt-host", help="MQTT broker host")
    run.add_argument("--mqtt-port", type=int, help="MQTT broker port")
    run.add_argument("--http-port", type=int, help="turn on the web preview on this port")
    run.add_argument("--device-id", help="device id used in topics and payloads")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    run.set_defaults(func=cmd_run, hard_exit=True)

    check = subparsers.add_parser("check-config", help="validate a config file without running")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_check_config)


def resolve_config_path(explicit: Optional[str]) -> Optional[str]:
    if explicit:
        return explicit
    if os.environ.get("EDGECAM_CONFIG"):
        return os.environ["EDGECAM_CONFIG"]
    for name in DEFAULT_CONFIG_NAMES:
        if Path(name).is_file():
            return name
    return None


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "source.uri": args.source,
        "model.path": args.model,
        "mqtt.host": args.mqtt_host,
        "mqtt.port": args.mqtt_port,
        "preview.http.port": args.http_port,
        "device_id": args.device_id,
        "log_level": args.log_level,
    }
    overrides = {key: value for key, value in pairs.items() if value is not None}
    if args.preview:
        overrides["preview.window"] = True
    if args.no_mqtt:
        overrides["mqtt.enabled"] = False
    if args.http_port is not None:
        overrides["preview.http.enabled"] = True
    return overrides


def load_run_config(args: argparse.Namespace) -> Config:
    path = resolve_config_path(args.config)
    config = load_config(path)
    overrides = overrides_from_args(args)
    if overrides:
        config = apply_overrides(config, overrides, origin=f"{path or '<defaults>'} + command line")
    return config


def _lean_process() -> None:
    """Memory a camera daemon does not need (measured with edgecam.bench.rss): numpy's OpenBLAS
    keeps buffers for a thread per core, which nothing here uses (onnxruntime has its own
    threads); and glibc gives each thread that allocates an arena of its own, whose freed
    pages linger. Before numpy is imported and before any thread starts; a user's own
    settings win."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


_M_ARENA_MAX = -8  # glibc's malloc.h


def cmd_run(args: argparse.Namespace) -> int:
    _lean_process()
    config, model_note = resolve_default_model(load_run_config(args))
    setup_logging(config.log_level)
    if model_note:
        log.info("%s", model_note)
    # Imported after logging is set up, so model loading logs show.
    from edgecam.service.daemon import Daemon
    from edgecam.service.instance_lock import InstanceLock

    lock = InstanceLock(config.device_id).acquire()  # a second daemon with this device id stops here
    try:
        daemon = Daemon(config, stdout_results=True if args.stdout else None, duration_s=args.duration,
                        read_config=lambda: resolve_default_model(load_run_config(args))[0],
                        config_path=resolve_config_path(args.config))
        _install_signal_handlers(daemon)
        return daemon.run()
    except ModelError as err:  # no region could run: name the file, as every config error does
        raise ModelError(f"{resolve_config_path(args.config) or '<defaults>'}: {err}") from None
    finally:
        lock.release()


def _install_signal_handlers(daemon: Any) -> None:
    def _stop(signum: int, _frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        daemon.stop()

    def _reload(signum: int, _frame: Any) -> None:
        daemon.request_reload()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _reload)  # systemctl reload edgecam (ExecReload=)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every check `run` makes short of opening the cameras; one line per problem, exit 2 if any."""
    setup_logging("CRITICAL")  # the problems are printed below, once each
    config, model_note = resolve_default_model(load_config(args.file))
    from edgecam.service.daemon import Daemon

    daemon = Daemon(config, stdout_results=False)
    try:
        problems = daemon.preflight()
    except ModelError as err:
        raise ModelError(f"{args.file}: {err}") from None
    for problem in problems:
        print(f"edgecam: error: {args.file}: {problem}", file=sys.stderr)
    print(summary(args.file, daemon, model_note, ok=not problems))
    return 2 if problems else 0


def summary(file: str, daemon: Any, model_note: str, ok: bool = True) -> str:
    """What the file sets up: device, broker, web app, every camera and its regions."""
    config = daemon.config
    mqtt = f"mqtt {config.mqtt.host}:{config.mqtt.port}" if config.mqtt.enabled else "mqtt off"
    web = f"web app on {config.preview.http.bind}:{config.preview.http.port}" if config.preview.http.enabled \
        else "web app off"
    lines = [f"{file}: {'OK' if ok else 'NOT OK (see above)'}: device {config.device_id}, {mqtt}, {web}"]
    if model_note:
        lines.append(f"  {model_note}")
    layout = daemon.pipeline.layout
    for name, run in layout.cameras.items():
        lines.append(f"  camera {name}: {run.camera.source.describe()}")
        for region in run.regions:
            model = layout.classifier(region.model_path).info
            lines.append(f"    region {region.name}: box {list(region.cfg.box)}, {region.cfg.trigger}, "
                         f"model {region.model_path} ({model.name}, {len(model.labels)} labels"
                         f"{'' if model.trained else ', UNTRAINED: its labels mean nothing'})")
    for key, error in layout.errors.items():
        lines.append(f"    region {key.split('/')[1]} of camera {key.split('/')[0]}: NOT RUNNING: {error}")
    return "\n".join(lines)
