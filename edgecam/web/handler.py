"""One request on one connection: the guards in a fixed order, then the route.

Order: Host (403) -> Origin on state-changing methods (403) -> auth for
everything but public routes, unknown paths included (401) -> 404/405 -> the
route. Routes raise HttpError (or Busy) for every answer that is not theirs
to write. One request per connection (HTTP/1.0): a worker is never parked on
an idle keep-alive connection.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Optional
from urllib.parse import parse_qs

from edgecam.result import encode_json
from edgecam.web.errors import Busy, HttpError
from edgecam.web.guards import SAFE_METHODS, basic_auth_ok, same_origin
from edgecam.web.limits import DeadlineReader
from edgecam.web.request import App

logger = logging.getLogger(__name__)

MAX_QUERY_FIELDS = 16
_AUTHENTICATE = {"WWW-Authenticate": 'Basic realm="edgecam", charset="UTF-8"'}


class Handler(BaseHTTPRequestHandler):
    server_version = "edgecam"  # and no Python version: see version_string
    protocol_version = "HTTP/1.0"

    # -- connection set-up --------------------------------------------------------------------

    @property
    def app(self) -> App:
        return self.server.app  # type: ignore[attr-defined, no-any-return]

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile.close()  # replaced by reads under the request's total deadline
        self.reader = DeadlineReader(self.connection, time.monotonic() + self.app.cfg.request_timeout_s)
        self.rfile = io.BufferedReader(self.reader)
        self.responded = False
        self.error_answered = False
        self.headers = None  # type: ignore[assignment]  # until parsed
        self.query: dict[str, list[str]] = {}
        self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""  # until parsed

    def handle(self) -> None:
        try:
            self.handle_one_request()
        except TimeoutError:
            pass
        except ConnectionError:
            return
        if time.monotonic() >= self.reader.deadline and not self.responded:
            self._answer_timeout()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.address_string(), *args)

    # -- dispatch -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        try:
            self._check_host_and_origin()
            methods = self.app.routes.get(path, {})
            route = methods.get(self.command)
            if not (route is not None and route.public):
                self._check_auth()
            if not methods:
                raise HttpError(404, f"no such endpoint: {path[:200]}")
            if route is None:
                raise HttpError(405, f"{self.command} is not allowed on {path}", {"Allow": ", ".join(methods)})
            try:
                self.query = parse_qs(query, max_num_fields=MAX_QUERY_FIELDS)
            except ValueError:
                raise HttpError(400, f"more than {MAX_QUERY_FIELDS} query parameters") from None
            route.handler(self)
        except Busy as err:
            self.app.limits.busy.refused(err.reason, err.limit)
            self._answer_error(err)
        except HttpError as err:
            self._answer_error(err)
        except TimeoutError:
            raise  # handle() answers 408
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a bug: answer 500, keep the server up
            logger.exception("web preview: error serving %s %s", self.command, path)
            self._answer_error(HttpError(500, "internal error (see the daemon log)"))

    def _check_host_and_origin(self) -> None:
        host = self.headers.get("Host")
        if not self.app.hosts.allows(host) or len(self.headers.get_all("Host") or ()) > 1:
            self.app.count_forbidden("host")
            raise HttpError(403, f"Host {str(host)[:100]!r} is not a name of this server; add it to "
                                 "preview.http.allowed_hosts to use it")
        if self.command not in SAFE_METHODS and not same_origin(self.headers):
            self.app.count_forbidden("origin")
            raise HttpError(403, "cross-site request refused: its Origin (or Referer) is another site")

    def _check_auth(self) -> None:
        expected = self.app.credentials
        if expected is not None and not basic_auth_ok(self.headers.get("Authorization"), expected):
            raise HttpError(401, "authentication required", _AUTHENTICATE)

    # -- responses ----------------------------------------------------------------------------

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        self.responded = True
        super().send_response(code, message)

    def end_headers(self) -> None:
        self.connection.settimeout(self.app.cfg.request_timeout_s)  # writes: each sendall in total
        super().end_headers()

    def send_bytes(self, status: int, body: bytes, content_type: str,
                   headers: Optional[dict[str, str]] = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: Optional[dict[str, str]] = None) -> None:
        self.send_bytes(status, encode_json(payload), "application/json", headers)  # strict: no NaN

    def follow_progress(self, min_bytes_per_s: float) -> None:
        """This request's body may take longer than request_timeout_s while it keeps arriving."""
        self.reader.follow_progress(min_bytes_per_s)

    @property
    def answered_early(self) -> bool:
        """An error answer went out on a request that declared a body: the client may still be
        sending it, so the server must drain before it closes (server.Refuser.linger)."""
        return self.error_answered and self.headers is not None and (
            "Content-Length" in self.headers or "Transfer-Encoding" in self.headers)

    def parse_request(self) -> bool:
        """http.server's parser, refusing HTTP/0.9 (a request line without a version, or with
        "HTTP/0.9"): its answers have no status line and no headers, so neither a client nor a
        proxy could tell an error from a page."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(505, "HTTP/0.9 is not supported: send HTTP/1.0 or HTTP/1.1")
            return False
        return True

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """Errors http.server finds itself (a bad request line or version, a header too long):
        answered like every other error, a status line and JSON. The stdlib's own answer is an
        HTML page, sent without status line or headers when it could not read an HTTP version."""
        if self.request_version == "HTTP/0.9":  # what parse_request assumes until it reads one
            self.request_version = "HTTP/1.0"
        self._answer_error(HttpError(code, message or self.responses.get(code, ("bad request",))[0]))

    def _answer_error(self, err: HttpError) -> None:
        self.close_connection = True
        self.error_answered = True
        if self.responded:  # a stream already sent its headers: all we can do is close
            return
        try:
            self.send_json(err.status, {"error": err.message}, err.headers)
        except OSError:
            pass

    def _answer_timeout(self) -> None:
        limit = self.app.cfg.request_timeout_s
        try:
            self.connection.settimeout(1.0)
            self.send_json(408, {"error": f"the request did not arrive within preview.http.request_timeout_s "
                                          f"({limit:g} s)"})
        except OSError:
            pass
