"""The server: one accept thread, a fixed pool of workers, and HttpPreview,
the object the daemon starts and stops.

The accept thread only counts and queues connections: a connection over
max_connections gets its 503 from the Refuser (which drains what the client
still sends, so the answer is not lost to a TCP reset) and is never queued.
workers + max_streams threads serve the queue, each one request at a time;
a stream holds its thread, which is why streams have their own cap. The
listen backlog is preview.http.backlog (http.server's default is 5, which
turned bursts into 1 s SYN retries).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import queue
import resource
import selectors
import socket
import socketserver
import threading
import time
from collections import Counter
from typing import Any, Callable, Mapping, Optional

from edgecam.config import HttpPreviewConfig
from edgecam.control.protocol import DaemonControl
from edgecam.errors import ConfigError
from edgecam.histogram import HistogramSnapshot
from edgecam.preview.hub import PreviewHub
from edgecam.web import metrics
from edgecam.web.errors import RETRY_AFTER_S, Busy, HttpError
from edgecam.web.guards import HostCheck, load_credentials
from edgecam.web.handler import Handler
from edgecam.web.limits import Limits
from edgecam.web.routes import ROUTES
from edgecam.web.train_job import Trainer

logger = logging.getLogger(__name__)

HubSource = Callable[[], Mapping[str, PreviewHub]]
_FD_HEADROOM = 64  # files the rest of the daemon may hold (model, camera, MQTT, logs)


class HttpPreview:
    def __init__(self, cfg: HttpPreviewConfig, hubs: "HubSource | Mapping[str, PreviewHub] | PreviewHub",
                 control: DaemonControl) -> None:
        """``hubs`` gives each camera's hub, asked anew for every request (a live reload adds
        and removes cameras); a fixed mapping or one hub does for tests."""
        self.cfg = cfg
        if isinstance(hubs, PreviewHub):
            hubs = {"default": hubs}
        if isinstance(hubs, Mapping):
            fixed = dict(hubs)
            hubs = lambda: fixed  # noqa: E731
        self._hubs: HubSource = hubs
        self.control = control
        self.routes = ROUTES
        self.credentials = load_credentials(cfg.auth)
        self.hosts = HostCheck(cfg.bind, cfg.allowed_hosts)
        self.limits = Limits(cfg)
        self.forbidden: Counter[str] = Counter()  # 403s by guard ("host", "origin")
        self._forbidden_lock = threading.Lock()
        self.stop_event = threading.Event()
        self.trainer = Trainer(nice=cfg.train_nice, memory_mb=cfg.train_memory_mb, threads=cfg.train_threads)
        self.port: Optional[int] = None
        self._server: Optional[_PooledServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Bind and serve in background threads. Raises ConfigError when the
        address cannot be bound (port in use, unknown address)."""
        if self._server is not None:
            return
        if self.credentials is None and not _is_loopback(self.cfg.bind):
            logger.warning(
                "web preview listens on %s without authentication: anyone on the network can watch "
                "the camera; set preview.http.auth or bind to 127.0.0.1", self.cfg.bind)
        _check_file_limit(self.cfg.max_connections)
        try:
            self._server = _PooledServer(self)
        except OSError as err:
            where = f"{self.cfg.bind}:{self.cfg.port}"
            raise ConfigError(f"preview.http: cannot listen on {where}: {err.strerror or err}") from None
        self.port = int(self._server.server_address[1])
        self.stop_event.clear()
        self._server.start_workers(self.cfg.workers + self.cfg.max_streams)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="edgecam-http", daemon=True)
        self._thread.start()
        logger.info("web preview on http://%s:%d/", self.cfg.bind, self.port)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting, end open streams, stop the workers; returns within ~timeout."""
        self.stop_event.set()
        self.trainer.stop()
        if self._server is None:
            return
        deadline = time.monotonic() + timeout
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._server.stop_workers(deadline)
        self.limits.stop()
        self._server = None
        self._thread = None

    @property
    def hubs(self) -> Mapping[str, PreviewHub]:
        """camera -> its hub, as it runs now."""
        return self._hubs()

    @property
    def hub(self) -> PreviewHub:
        """The first camera's hub: the default view."""
        hubs = self.hubs
        if not hubs:
            raise HttpError(503, "no camera runs")
        return next(iter(hubs.values()))

    def hub_for(self, camera: Optional[str]) -> PreviewHub:
        """The hub of ``?camera=NAME`` (default: the first camera); 404 for an unknown name."""
        if camera is None:
            return self.hub
        hubs = self.hubs
        if camera not in hubs:
            raise HttpError(404, f"no camera named {camera[:64]!r}")
        return hubs[camera]

    def count_forbidden(self, guard: str) -> None:
        with self._forbidden_lock:
            self.forbidden[guard] += 1

    @property
    def stream_clients(self) -> int:
        return self.limits.streams

    @property
    def open_connections(self) -> int:
        return self.limits.connections

    @property
    def busy_refusals(self) -> int:
        return self.limits.busy.total

    def metrics_text(self) -> str:
        ok, _reason = self.control.health()
        extra = [
            ("edgecam_healthy", "gauge", "1 while frames flow and inference keeps up.", 1.0 if ok else 0.0),
            ("edgecam_preview_stream_clients", "gauge", "Open MJPEG preview streams.", float(self.stream_clients)),
            ("edgecam_preview_connections", "gauge", "Open web preview connections.", float(self.open_connections)),
            ("edgecam_preview_busy_total", "counter", "Requests answered 503 because a web preview limit was reached.",
             float(self.busy_refusals)),
            ("edgecam_preview_forbidden_total", "counter", "Requests refused for their Host or Origin.",
             float(sum(self.forbidden.values()))),
            ("edgecam_preview_jpeg_encodes_total", "counter", "Preview frames encoded as JPEG.",
             float(sum(hub.encodes for hub in self.hubs.values()))),
        ]
        return metrics.render_metrics(self.control.stats(), self._histograms(), extra)

    def _histograms(self) -> dict[str, tuple[str, HistogramSnapshot]]:
        per_hub = [hub.histograms() for hub in self.hubs.values()]
        if not per_hub:
            return {}
        return {name: (help_text, HistogramSnapshot.merge([h[name][1] for h in per_hub]))
                for name, (help_text, _) in per_hub[0].items()}

    def latest_payload(self) -> dict[str, Any]:
        hubs = self.hubs
        first = next(iter(hubs.values()), None)
        result = first.latest_result() if first is not None else None
        ok, reason = self.control.health()
        return {
            "result": result.to_payload() if result is not None else None,  # the first camera's latest
            "fps": first.fps() if first is not None else None,
            "stats": self.control.stats(),
            "health": {"ok": ok, "reason": reason},
            "paused": self.control.paused,
            "cameras": {name: _camera_payload(hub) for name, hub in hubs.items()},
        }


def _camera_payload(hub: PreviewHub) -> dict[str, Any]:
    """What the page shows per camera: each region's box, latest Top-k and debounced state."""
    results = hub.region_results()
    states = hub.states()
    return {
        "fps": hub.fps(),  # results per second
        "camera_fps": hub.camera_fps(),  # frames per second the camera delivers
        "regions": {name: {"box": list(box), "state": states.get(name),
                           "result": results[name].to_payload() if name in results else None}
                    for name, box in hub.boxes.items()},
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_file_limit(max_connections: int) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < max_connections + _FD_HEADROOM:
        logger.warning("preview.http.max_connections (%d) is close to the open-file limit (%d): raise "
                       "LimitNOFILE= in the unit or lower max_connections", max_connections, soft)


class _PooledServer(socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self, app: HttpPreview) -> None:
        self.app = app
        self.address_family = socket.AF_INET6 if ":" in app.cfg.bind else socket.AF_INET
        self.request_queue_size = app.cfg.backlog
        self._queue: queue.SimpleQueue[Optional[tuple[socket.socket, Any]]] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        busy = Busy("connections", f"max_connections ({app.cfg.max_connections})")
        self.refuser = Refuser(_raw_busy_response(busy.message))
        self._busy = busy
        self._emfile_logged = False
        super().__init__((app.cfg.bind, app.cfg.port), Handler)

    def start_workers(self, count: int) -> None:
        self.refuser.start()
        for index in range(count):
            worker = threading.Thread(target=self._work, name=f"edgecam-http-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop_workers(self, deadline: float) -> None:
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.refuser.stop()
        while True:  # connections still queued: close them
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.shutdown_request(item[0])

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as err:
            if err.errno in (errno.EMFILE, errno.ENFILE):  # out of files: do not spin on accept
                if not self._emfile_logged:
                    logger.warning("web preview: out of file descriptors, not accepting for now: %s", err)
                    self._emfile_logged = True
                time.sleep(0.05)
            raise

    def process_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        if not self.app.limits.open_connection():
            self.app.limits.busy.refused(self._busy.reason, self._busy.limit)
            self.refuser.refuse(request)
            return
        self._queue.put((request, client_address))

    def finish_request(self, request: Any, client_address: Any) -> Handler:  # type: ignore[override]
        return self.RequestHandlerClass(request, client_address, self)  # type: ignore[return-value, arg-type]

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            request, client_address = item
            handler: Optional[Handler] = None
            try:
                if not self.app.stop_event.is_set():
                    handler = self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                if handler is not None and handler.answered_early:
                    self.refuser.linger(request)  # the body may still be arriving: see Refuser
                else:
                    self.shutdown_request(request)
                self.app.limits.close_connection()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("web preview: error on a connection from %s", client_address, exc_info=True)


def _raw_busy_response(message: str) -> bytes:
    body = ('{"error": "%s"}' % message).encode("utf-8")
    head = (f"HTTP/1.0 503 Service Unavailable\r\nServer: edgecam\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: {RETRY_AFTER_S}\r\nCache-Control: no-store\r\n"
            f"Connection: close\r\n\r\n")
    return head.encode("ascii") + body


class Refuser:
    """Answers connections over the cap with a fixed 503 without blocking the
    accept thread (and takes over connections a worker answered early), then reads and
    discards what the client still sends until it closes (at most linger_s): closing
    with unread data would reset the
    connection and the client would see an error instead of the 503."""

    def __init__(self, response: bytes, max_pending: int = 256, linger_s: float = 2.0) -> None:
        self._response = response
        self._max_pending = max_pending
        self._linger_s = linger_s
        self._lock = threading.Lock()
        self._new: list[tuple[socket.socket, float]] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edgecam-http-refuse", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def refuse(self, sock: socket.socket) -> None:
        try:
            sock.setblocking(False)
            sock.send(self._response)  # a few hundred bytes: fits an empty send buffer
        except OSError:
            sock.close()
            return
        self.linger(sock)

    def linger(self, sock: socket.socket) -> None:
        """Close ``sock`` once the client has closed its side (or after linger_s), reading and
        discarding what it still sends: also for answers a worker sent before reading a body
        (413, 415, 401...), which a client that sends everything before reading would
        otherwise lose to the reset."""
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        with self._lock:
            if len(self._new) < self._max_pending:
                self._new.append((sock, time.monotonic() + self._linger_s))
                return
        sock.close()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        deadlines: dict[socket.socket, float] = {}
        while not self._stop.is_set():
            with self._lock:
                new, self._new = self._new, []
            for sock, deadline in new:
                if len(deadlines) >= self._max_pending:
                    sock.close()
                    continue
                deadlines[sock] = deadline
                selector.register(sock, selectors.EVENT_READ)
            for key, _ in selector.select(timeout=0.1) if deadlines else ():
                if not self._drain(key.fileobj):  # type: ignore[arg-type]
                    self._forget(selector, deadlines, key.fileobj)  # type: ignore[arg-type]
            now = time.monotonic()
            for sock in [s for s, d in deadlines.items() if d <= now]:
                self._forget(selector, deadlines, sock)
            if not deadlines:
                self._stop.wait(0.05)
        for sock in list(deadlines):
            self._forget(selector, deadlines, sock)
        selector.close()

    @staticmethod
    def _drain(sock: socket.socket) -> bool:
        """Discard what arrived; False once the client has closed."""
        try:
            return bool(sock.recv(65536))
        except BlockingIOError:
            return True
        except OSError:
            return False

    @staticmethod
    def _forget(selector: selectors.BaseSelector, deadlines: dict[socket.socket, float], sock: socket.socket) -> None:
        selector.unregister(sock)
        del deadlines[sock]
        sock.close()
