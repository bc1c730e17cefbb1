"""What a route sees of its request and of the web app: interfaces only.

Routes (``routes.py``, ``train_routes.py``) are typed against these, the handler
fills them in, and the server (which imports both) owns the route table, so no
module of the web app imports one that imports it back.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from io import BufferedIOBase
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from edgecam.config import HttpPreviewConfig
from edgecam.control.protocol import DaemonControl
from edgecam.preview.hub import PreviewHub
from edgecam.web.guards import HostCheck
from edgecam.web.limits import Limits
from edgecam.web.train_job import Trainer

if TYPE_CHECKING:
    from email.message import Message


class App(Protocol):
    """The web app (``server.HttpPreview``) as routes and the handler use it."""

    cfg: HttpPreviewConfig
    control: DaemonControl
    limits: Limits
    hosts: HostCheck
    credentials: Optional[tuple[bytes, bytes]]
    stop_event: threading.Event
    routes: "Mapping[str, Mapping[str, Route]]"
    trainer: Trainer  # training runs started from the page

    @property
    def hub(self) -> PreviewHub: ...

    def hub_for(self, camera: Optional[str]) -> PreviewHub: ...

    def count_forbidden(self, guard: str) -> None: ...

    def latest_payload(self) -> dict[str, Any]: ...

    def metrics_text(self) -> str: ...


class Request(Protocol):
    """One request, as ``handler.Handler`` serves it."""

    query: dict[str, list[str]]
    headers: Message
    rfile: BufferedIOBase
    wfile: BufferedIOBase
    close_connection: bool

    @property
    def app(self) -> App: ...

    def send_response(self, code: int, message: Optional[str] = None) -> None: ...

    def send_header(self, keyword: str, value: str) -> None: ...

    def end_headers(self) -> None: ...

    def send_bytes(self, status: int, body: bytes, content_type: str,
                   headers: Optional[dict[str, str]] = None) -> None: ...

    def send_json(self, status: int, payload: Any, headers: Optional[dict[str, str]] = None) -> None: ...

    def follow_progress(self, min_bytes_per_s: float) -> None: ...


@dataclass(frozen=True)
class Route:
    handler: Callable[[Request], None]
    public: bool = False  # answered without auth
