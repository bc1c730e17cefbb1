"""Reading a password file: one helper for every ``*.password_file`` key.

The password is the file's text without the trailing newline. A file that
group or others may read gets one warning per file and process (the daemon
keeps running: refusing to start over a mode would break installs that work).
"""

from __future__ import annotations

import logging
import os
import stat
import threading

from edgecam.errors import ConfigError

logger = logging.getLogger(__name__)

MAX_SECRET_BYTES = 65536
_warned: set[str] = set()
_warned_lock = threading.Lock()


def read_secret_file(path: str, key_path: str) -> str:
    """The secret in ``path``; ``key_path`` (e.g. "mqtt.password_file") names
    the config key in errors and warnings. Raises ConfigError."""
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            raw = fh.read(MAX_SECRET_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{key_path}: cannot read {path}: {err.strerror or err}") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(f"{key_path}: {path} is larger than {MAX_SECRET_BYTES} bytes: not a password file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{key_path}: cannot read {path}: not UTF-8 text") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        _warn_once(path, key_path, stat.S_IMODE(mode))
    return text.rstrip("\r\n")


def _warn_once(path: str, key_path: str, mode: int) -> None:
    key = os.path.realpath(path)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning("%s: %s is readable by group or others (mode 0%o): chmod 600 it, owned by the user "
                   "edgecam runs as, so that only edgecam can read the password", key_path, path, mode)
