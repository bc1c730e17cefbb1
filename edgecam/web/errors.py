"""The one exception the HTTP layer answers with: a status, a message, extra headers."""

from __future__ import annotations

from typing import Optional

from edgecam.errors import EdgecamError

RETRY_AFTER_S = 1  # what a 503 asks the client to wait


class HttpError(EdgecamError):
    """Answered as ``status`` with ``{"error": message}``; raised by guards and routes."""

    def __init__(self, status: int, message: str, headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class Busy(HttpError):
    """503 + Retry-After: a limit is reached; ``reason`` names it for the busy log."""

    def __init__(self, reason: str, limit: str) -> None:
        super().__init__(503, f"the web preview is busy ({limit} reached): try again shortly",
                         {"Retry-After": str(RETRY_AFTER_S)})
        self.reason = reason
        self.limit = limit
