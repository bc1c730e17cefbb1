"""Who may ask what: the Host check (DNS rebinding), the Origin check (other
web pages), and HTTP basic auth.

DNS rebinding: a page on attacker.example re-points its name at 127.0.0.1
and then reads the preview as "same origin". Its requests still carry
``Host: attacker.example``, so only names that belong to this server are
answered. IP literals cannot be rebound, so they are fine when the server
listens on every address. A web page can also send a form or text/plain POST
to any address without asking (no CORS preflight): state-changing requests
whose Origin (or Referer) is another site are refused, credentials or not.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import socket
from typing import TYPE_CHECKING, Iterable, Mapping, Optional
from urllib.parse import urlsplit

from edgecam.config import HttpAuthConfig
from edgecam.errors import ConfigError
from edgecam.secrets import read_secret_file

if TYPE_CHECKING:
    from email.message import Message

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WILDCARDS = {"", "0.0.0.0", "::"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _ip(host: str) -> Optional[str]:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _normal(name: str) -> str:
    """Lower case, no trailing dot; IP literals in their canonical form."""
    name = name.strip().lower().rstrip(".")
    return _ip(name) or name


def split_host(value: str) -> Optional[tuple[str, Optional[int]]]:
    """``Host``-style "name[:port]" / "[v6][:port]" -> (normal name, port), None if malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[1:end], value[end + 1:]
        if end < 0 or _ip(host) is None or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_or_empty = value.partition(":")
        port_text = port_text_or_empty if colon else None
        if not host or any(c in host for c in " /\\@[]"):
            return None
    if port_text is not None and not (port_text.isdigit() and len(port_text) <= 5):
        return None
    return _normal(host), int(port_text) if port_text else None


class HostCheck:
    """The Host names this server answers to."""

    def __init__(self, bind: str, allowed: Iterable[str] = (), hostname: Optional[str] = None) -> None:
        hostname = (hostname if hostname is not None else socket.gethostname()).lower()
        self.any_address = bind.strip() in _WILDCARDS
        names = {"localhost", "127.0.0.1", "::1", *(_normal(a) for a in allowed)}
        if hostname:
            short = hostname.split(".")[0]
            names |= {hostname, short, short + ".local"}
        if not self.any_address:
            names.add(_normal(bind))
        self.names = frozenset(names)

    def allows(self, host_header: Optional[str]) -> bool:
        if host_header is None:
            return True  # HTTP/1.0 without Host: not a browser, so not rebinding
        parsed = split_host(host_header)
        if parsed is None:
            return False
        name = parsed[0]
        return name in self.names or (self.any_address and _ip(name) is not None)


def _origin_key(url: str) -> Optional[tuple[str, int]]:
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return _normal(parts.hostname), port


def same_origin(headers: "Mapping[str, str] | Message") -> bool:
    """True unless the request's Origin (or, without one, Referer) names
    another site than its Host. No Origin and no Referer: not a browser, allowed."""
    source = headers.get("Origin")
    if source is None:
        source = headers.get("Referer")
        if not source:
            return True
    origin = _origin_key(source)  # "null" (sandboxed frames, file://) parses to None
    host = split_host(headers.get("Host") or "")
    if origin is None or host is None:
        return False
    return (host[0], host[1] or _DEFAULT_PORTS[urlsplit(source).scheme]) == origin


# -- basic auth -------------------------------------------------------------------------------------


def load_credentials(auth: HttpAuthConfig) -> Optional[tuple[bytes, bytes]]:
    """(username, password) as bytes, or None when auth is off."""
    has_password = bool(auth.password_file or auth.password_env)
    if not auth.username:
        if has_password:
            raise ConfigError("preview.http.auth: a password needs a username")
        return None
    if not has_password:
        raise ConfigError("preview.http.auth: username needs password_file or password_env")
    if auth.password_file and auth.password_env:
        raise ConfigError("preview.http.auth: give password_file or password_env, not both")
    if auth.password_file:
        password = read_secret_file(auth.password_file, "preview.http.auth.password_file")
    else:
        password = os.environ.get(auth.password_env or "", "")
        if not password:
            raise ConfigError(f"preview.http.auth.password_env: environment variable {auth.password_env} is not set")
    if not password:
        raise ConfigError("preview.http.auth: the password is empty")
    return auth.username.encode("utf-8"), password.encode("utf-8")


def basic_auth_ok(header: Optional[str], expected: tuple[bytes, bytes]) -> bool:
    """Check ``Authorization: Basic ...`` (scheme name in any case) in constant time."""
    scheme, _, value = (header or "").strip().partition(" ")
    user, password = b"", b""
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (ValueError, binascii.Error):
            pass
    user_ok = hmac.compare_digest(user, expected[0])
    return hmac.compare_digest(password, expected[1]) and user_ok
