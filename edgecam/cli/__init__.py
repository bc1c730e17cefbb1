"""The `edgecam` command line: one subcommand per job.

Each command's module registers its own arguments (``register(subparsers)``)
and sets ``func`` to a handler returning an exit code. Only the module of the
command being run is imported (the others appear in ``--help`` by name), so
``edgecam run`` never imports the model-building or training code. An
EdgecamError anywhere becomes one clear line on stderr and exit code 2, never
a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Optional, Sequence

from edgecam import __version__
from edgecam.errors import EdgecamError

#: command -> (module that registers it, one-line help for the overview)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edgecam.cli.run", "run the daemon: camera -> classifier -> MQTT/stdout"),
    "check-config": ("edgecam.cli.run", "validate a config file without running"),
    "model": ("edgecam.cli.model", "build edgecam ONNX models"),
    "classify": ("edgecam.cli.model", "print the Top-k classes of image files with an edgecam model"),
    "train": ("edgecam.cli.train", "train your own classes on a folder of labelled images"),
    "listen": ("edgecam.publish.mqtt.listen", "print the results edgecam devices publish on MQTT"),
}


def build_parser(argv: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of the command named in ``argv`` (all of them
    when ``argv`` names none, e.g. for ``--help``)."""
    parser = argparse.ArgumentParser(prog="edgecam", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edgecam {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((arg for arg in (argv or ()) if not arg.startswith("-")), None)
    modules = [COMMANDS[wanted][0]] if wanted in COMMANDS else list(dict.fromkeys(m for m, _ in COMMANDS.values()))
    registered: set[str] = set()
    for module in modules:
        before = set(subparsers.choices)
        importlib.import_module(module).register(subparsers)
        registered |= set(subparsers.choices) - before
    for name, (_, help_text) in COMMANDS.items():
        if name not in registered:
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return _dispatch(build_parser(argv).parse_args(argv))


def entry() -> None:
    """The console script and ``python -m edgecam``.

    Once ``edgecam run`` has shut down and flushed its logs, the process ends with
    ``os._exit``: no native thread (a camera read stuck in a driver, paho resolving
    a broker name, onnxruntime's pools) and no C++ static destructor may hold the
    exit past systemd's TimeoutStopSec, or abort it.
    """
    argv = sys.argv[1:]
    args = build_parser(argv).parse_args(argv)
    code = _dispatch(args)
    if getattr(args, "hard_exit", False):
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except EdgecamError as err:
        print(f"edgecam: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        logging.shutdown()
