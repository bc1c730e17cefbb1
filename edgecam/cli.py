"""The `edgecam` command line: one subcommand per job.

Each concern registers its own subcommands (``register(subparsers)``) and sets
``func`` to a handler returning an exit code. An EdgecamError anywhere becomes
one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from edgecam import __version__
from edgecam.errors import EdgecamError


def build_parser() -> argparse.ArgumentParser:
    from edgecam.model import cli as model_cli
    from edgecam.publish import listen as listen_cli
    from edgecam.service import cli as service_cli

    parser = argparse.ArgumentParser(prog="edgecam", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edgecam {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    service_cli.register(subparsers)
    model_cli.register(subparsers)
    listen_cli.register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return _dispatch(build_parser().parse_args(argv))


def entry() -> None:
    """The console script and ``python -m edgecam``.

    Once ``edgecam run`` has shut down and flushed its logs, the process ends with
    ``os._exit``: no native thread (a camera read stuck in a driver, paho resolving
    a broker name, onnxruntime's pools) and no C++ static destructor may hold the
    exit past systemd's TimeoutStopSec, or abort it.
    """
    args = build_parser().parse_args()
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


if __name__ == "__main__":
    entry()
