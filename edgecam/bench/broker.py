"""A REAL Mosquitto broker on a free loopback port, for tests, benchmarks and harnesses.

Never touches a broker that may already listen on 1883. ``Broker`` writes its
own mosquitto.conf, starts ``mosquitto -c`` as a subprocess, and stops it by
PID; ``restart()`` keeps the same port so clients can reconnect. Variants:
password file (``mosquitto_passwd``), TLS (CA + server cert made with the
``openssl`` CLI).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HOST = "127.0.0.1"


def _tool(name: str, fallback: str = "") -> str:
    path = shutil.which(name) or (fallback if fallback and os.path.exists(fallback) else "")
    if not path:
        raise RuntimeError(f"{name} not found: install it (scripts/setup.sh --dev, or apt-get install -y "
                           "mosquitto openssl); the MQTT tests and benchmarks need a real broker")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path  # an unrelated CA: verification against it must fail


class Broker:
    """A private mosquitto on 127.0.0.1:<free port>; stop()/restart() by PID."""

    def __init__(self, workdir: Path, *, port: Optional[int] = None, passwords: Optional[dict[str, str]] = None,
                 tls: Optional[TlsFiles] = None) -> None:
        self.host = HOST
        self.port = port or free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "mosquitto.log"
        self.conf_path = self.dir / "mosquitto.conf"
        self.tls = tls
        self._proc: Optional[subprocess.Popen[bytes]] = None
        lines = [f"listener {self.port} {HOST}", "persistence false", f"log_dest file {self.log_path}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "user root"]  # only matters when run as root: do not drop to 'mosquitto' (tmp files)
        if passwords:
            pwfile = self.dir / "passwd"
            write_password_file(pwfile, passwords)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"cafile {tls.ca_cert}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}"]
        self.conf_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> "Broker":
        exe = _tool("mosquitto", "/usr/sbin/mosquitto")
        with open(self.dir / "stderr.txt", "ab") as err:
            self._proc = subprocess.Popen([exe, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{self.log_text()}"
                                   f"{(self.dir / 'stderr.txt').read_text(errors='replace')}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> "Broker":
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is read or acknowledged."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def write_password_file(path: Path, users: dict[str, str]) -> None:
    """mosquitto_passwd -b when available, else the documented $7$ PBKDF2-SHA512 format."""
    tool = shutil.which("mosquitto_passwd")
    if tool:
        for i, (user, password) in enumerate(users.items()):
            flags = ["-c"] if i == 0 else []
            subprocess.run([tool, *flags, "-b", str(path), user, password], check=True, capture_output=True)
        return
    lines = []
    for user, password in users.items():
        salt = os.urandom(12)
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
        lines.append(f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}")
    path.write_text("\n".join(lines) + "\n")


def make_tls_files(workdir: Path) -> TlsFiles:
    """A throwaway CA, a server cert for localhost/127.0.0.1 signed by it, and a second CA."""
    openssl = _tool("openssl")
    workdir.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=workdir)

    for name in ("ca", "other_ca"):
        run("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3",
            "-subj", f"/CN=edgecam test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (workdir / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "3", "-extfile", "server.ext")
    return TlsFiles(workdir / "ca.crt", workdir / "server.crt", workdir / "server.key", workdir / "other_ca.crt")
