"""One daemon per device id on a machine.

Two daemons with the same device id use the same MQTT client id, so the broker
keeps dropping one for the other (each reconnect knocks the other off), and they
would share the same outbox file. ``InstanceLock`` takes an exclusive ``flock`` on
``<state directory>/edgecam-<device id>.lock`` (the directory the outbox uses:
``$STATE_DIRECTORY``, else ``~/.local/state/edgecam``) for as long as the process
lives; the kernel releases it when the process ends, however it ends (``kill -9``
too), so a stale file never blocks a start. A second daemon gets a clear error
naming the first one's PID.

A directory that cannot hold the lock (read-only, missing permissions) is one
warning, not a refusal to start: the lock guards against a mistake, and edgecam
runs without it as it did before.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
from pathlib import Path

from edgecam.errors import ConfigError
from edgecam.publish.mqtt.outbox import state_directory

log = logging.getLogger(__name__)

_PLAIN = re.compile(r"[A-Za-z0-9._-]{1,100}")


def lock_path(device_id: str, directory: Path | None = None) -> Path:
    """The lock file of ``device_id`` (a hash of it when it is not a plain file name)."""
    name = device_id if _PLAIN.fullmatch(device_id) and device_id not in (".", "..") else \
        hashlib.sha256(device_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return (directory if directory is not None else state_directory()) / f"edgecam-{name}.lock"


class InstanceLock:
    """``InstanceLock(device_id).acquire()`` before the daemon starts; ``release()`` (or the
    process's end) after."""

    def __init__(self, device_id: str, directory: Path | None = None) -> None:
        self.device_id = device_id
        self.path = lock_path(device_id, directory)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> InstanceLock:
        """Raises ConfigError naming the other daemon's PID when one holds the lock."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            log.warning("cannot take the lock for device id %s (%s: %s); a second edgecam with the same "
                        "device id would not be refused", self.device_id, self.path, err.strerror or err)
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            other = _read_pid(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                log.warning("cannot take the lock %s: %s; going on without it", self.path, err.strerror or err)
                return self
            raise ConfigError(
                f"another edgecam ({f'PID {other}' if other else 'PID unknown'}) already runs with device id "
                f"{self.device_id!r} (lock {self.path}); two would knock each other off the broker (same "
                "client id). Stop it, or give this one its own device_id.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock (the file stays: no race)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
