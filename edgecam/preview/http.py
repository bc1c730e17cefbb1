"""The headless web preview: live MJPEG, health, metrics and one-shot classify.

Standard library only (ThreadingHTTPServer), off by default. Endpoints:

  GET  /             HTML page: the stream plus Top-3, latency and FPS (polls /api/latest)
  GET  /stream.mjpg  multipart/x-mixed-replace JPEGs, at most max_fps
  GET  /latest.jpg   newest annotated frame (503 before the first)
  GET  /api/latest   JSON: latest result payload, FPS, stats, health
  GET  /health       200 + JSON while healthy, 503 + JSON with the reason otherwise
  GET  /metrics      Prometheus text format
  GET  /classify     a small upload form
  POST /classify     an image (raw body or multipart/form-data) -> JSON Top-k

With ``auth.username`` set every endpoint except /health needs HTTP basic auth.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from functools import lru_cache
from importlib import resources
from typing import Any, Optional

import cv2
import numpy as np

from edgecam.config import HttpAuthConfig, HttpPreviewConfig
from edgecam.errors import ConfigError, EdgecamError
from edgecam.preview import metrics
from edgecam.preview.hub import PreviewHub
from edgecam.control.protocol import DaemonControl

logger = logging.getLogger(__name__)

_BOUNDARY = "edgecamframe"
_STREAM_POLL_S = 0.25  # how often an idle stream re-checks the stop event


class HttpPreview:
    def __init__(self, cfg: HttpPreviewConfig, hubs: "dict[str, PreviewHub] | PreviewHub",
                 control: DaemonControl) -> None:
        self.cfg = cfg
        self.hubs = hubs if isinstance(hubs, dict) else {"default": hubs}
        self.hub = next(iter(self.hubs.values()))
        self.control = control
        self.credentials = load_credentials(cfg.auth)
        self.stop_event = threading.Event()
        self.port: Optional[int] = None
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._clients_lock = threading.Lock()
        self.stream_clients = 0

    def start(self) -> None:
        """Bind and serve in a background thread. Raises ConfigError when the
        address cannot be bound (port in use, unknown address)."""
        if self._server is not None:
            return
        if self.credentials is None and not _is_loopback(self.cfg.bind):
            logger.warning(
                "web preview listens on %s without authentication: anyone on the network can watch "
                "the camera; set preview.http.auth or bind to 127.0.0.1", self.cfg.bind)
        server_cls = _Server6 if ":" in self.cfg.bind else _Server
        try:
            self._server = server_cls((self.cfg.bind, self.cfg.port), _Handler)
        except OSError as err:
            where = f"{self.cfg.bind}:{self.cfg.port}"
            raise ConfigError(f"preview.http: cannot listen on {where}: {err.strerror or err}") from None
        self._server.app = self  # type: ignore[attr-defined]
        self.port = int(self._server.server_address[1])
        self.stop_event.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="edgecam-http", daemon=True)
        self._thread.start()
        logger.info("web preview on http://%s:%d/", self.cfg.bind, self.port)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting and tell open streams to end; returns within ~timeout."""
        self.stop_event.set()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None

    def client_delta(self, delta: int) -> None:
        with self._clients_lock:
            self.stream_clients += delta

    def metrics_text(self) -> str:
        ok, _reason = self.control.health()
        extra = [
            ("edgecam_healthy", "gauge", "1 while frames flow and inference keeps up.", 1.0 if ok else 0.0),
            ("edgecam_preview_stream_clients", "gauge", "Open MJPEG preview streams.", float(self.stream_clients)),
            ("edgecam_preview_jpeg_encodes_total", "counter", "Preview frames encoded as JPEG.",
             float(self.hub.encodes)),
        ]
        return metrics.render_metrics(self.control.stats(), self.hub.histograms(), extra)

    def latest_payload(self) -> dict[str, Any]:
        result = self.hub.latest_result()
        ok, reason = self.control.health()
        return {
            "result": result.to_payload() if result is not None else None,
            "fps": self.hub.fps(),
            "stats": self.control.stats(),
            "health": {"ok": ok, "reason": reason},
            "paused": self.control.paused,
        }


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
        try:
            with open(auth.password_file, encoding="utf-8") as fh:
                password = fh.read().rstrip("\r\n")
        except OSError as err:
            raise ConfigError(
                f"preview.http.auth.password_file: cannot read {auth.password_file}: {err.strerror}") from None
    else:
        password = os.environ.get(auth.password_env or "", "")
        if not password:
            raise ConfigError(f"preview.http.auth.password_env: environment variable {auth.password_env} is not set")
    if not password:
        raise ConfigError("preview.http.auth: the password is empty")
    return auth.username.encode("utf-8"), password.encode("utf-8")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server_version = "edgecam"
    timeout = 15  # seconds a stalled client may block one handler thread

    @property
    def app(self) -> HttpPreview:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        routes = {
            "/": self._page_index, "/index.html": self._page_index, "/classify": self._page_classify,
            "/stream.mjpg": self._stream, "/latest.jpg": self._latest_jpg, "/api/latest": self._api_latest,
            "/health": self._health, "/metrics": self._metrics,
        }
        self._dispatch(path, routes)

    def do_POST(self) -> None:
        self._dispatch(self.path.split("?", 1)[0], {"/classify": self._classify})

    def _dispatch(self, path: str, routes: dict) -> None:
        handler = routes.get(path)
        if handler is None:
            self._json(404, {"error": f"no such endpoint: {path}"})
            return
        if path != "/health" and not self._authorized():
            return
        try:
            handler()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception:  # a bug: answer 500, keep the server up
            logger.exception("web preview: error serving %s", path)
            self._json(500, {"error": "internal error (see the daemon log)"})

    def _authorized(self) -> bool:
        expected = self.app.credentials
        if expected is None:
            return True
        header = self.headers.get("Authorization", "")
        user, password = b"", b""
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:], validate=True).partition(b":")
            except ValueError:
                pass
        user_ok = hmac.compare_digest(user, expected[0])
        if hmac.compare_digest(password, expected[1]) and user_ok:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="edgecam", charset="UTF-8"')
        self._finish_body(b'{"error": "authentication required"}', "application/json")
        return False

    # -- responses --------------------------------------------------------------------------

    def _finish_body(self, body: bytes, content_type: str) -> None:
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self._finish_body(body, content_type)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, default=str).encode("utf-8"), "application/json")

    # -- endpoints --------------------------------------------------------------------------

    def _page_index(self) -> None:
        self._send(200, _static("index.html"), "text/html; charset=utf-8")

    def _page_classify(self) -> None:
        self._send(200, _static("classify.html"), "text/html; charset=utf-8")

    def _latest_jpg(self) -> None:
        jpeg = self.app.hub.latest_jpeg()
        if jpeg is None:
            self._json(503, {"error": "no frame yet"})
        else:
            self._send(200, jpeg, "image/jpeg")

    def _api_latest(self) -> None:
        self._json(200, self.app.latest_payload())

    def _health(self) -> None:
        ok, reason = self.app.control.health()
        self._json(200 if ok else 503, {"ok": bool(ok), "reason": reason})

    def _metrics(self) -> None:
        self._send(200, self.app.metrics_text().encode("utf-8"), metrics.CONTENT_TYPE)

    def _stream(self) -> None:
        app = self.app
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        min_interval = 1.0 / app.cfg.max_fps
        version, last_sent = 0, float("-inf")
        app.client_delta(+1)
        try:
            while not app.stop_event.is_set():
                wait = last_sent + min_interval - time.monotonic()
                if wait > 0 and app.stop_event.wait(wait):
                    break
                item = app.hub.wait_for_new(version, _STREAM_POLL_S)
                if item is None:
                    continue
                version, jpeg = item
                head = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode("ascii") + jpeg + b"\r\n")
                self.wfile.flush()
                last_sent = time.monotonic()
        finally:
            app.client_delta(-1)

    def _classify(self) -> None:
        body = self._read_upload()
        if body is None:
            return
        bgr = _decode_image(body)
        if bgr is None:
            self._json(400, {"error": f"not an image: OpenCV could not decode the {len(body)}-byte upload "
                                      "(send a JPEG, PNG, BMP, WebP or TIFF file)"})
            return
        try:
            labels, ms = self.app.control.classify_image(bgr)
        except EdgecamError as err:
            self._json(503, {"error": str(err)})
            return
        top = [{"label": t.label, "index": int(t.index), "score": round(float(t.score), 5)} for t in labels]
        self._json(200, {"top": top, "ms": round(float(ms), 3), "width": bgr.shape[1], "height": bgr.shape[0]})

    def _read_upload(self) -> Optional[bytes]:
        """The image bytes, or None after answering 4xx. Checks Content-Length
        against max_upload_bytes before reading anything."""
        limit = self.app.cfg.max_upload_bytes
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            self.close_connection = True
            self._json(411, {"error": "Content-Length required (chunked uploads are not supported)"})
            return None
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._json(400, {"error": f"bad Content-Length: {raw_length!r}"})
            return None
        if length > limit:
            self.close_connection = True  # the body stays unread
            self._json(413, {"error": f"upload of {length} bytes is larger than max_upload_bytes ({limit})"})
            return None
        if length == 0:
            self._json(400, {"error": "empty body: send an image file as the request body or a form upload"})
            return None
        body = self.rfile.read(length)
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            part = _multipart_file(content_type, body)
            if not part:
                self._json(400, {"error": "multipart upload without a non-empty file field"})
                return None
            return part
        return body


def _multipart_file(content_type: str, body: bytes) -> Optional[bytes]:
    """The first file part (or a field named image/file) of a form upload."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP_POLICY).parsebytes(head + body)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename() or name in ("image", "file"):
            payload = part.get_payload(decode=True)
            if payload:
                return bytes(payload)
    return None


def _decode_image(data: bytes) -> Optional[np.ndarray]:
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    if image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        return None
    return image


@lru_cache(maxsize=4)
def _static(name: str) -> bytes:
    return resources.files("edgecam.preview").joinpath("static", name).read_bytes()
