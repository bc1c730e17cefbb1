"""The headless web preview: live MJPEG, health, metrics and one-shot classify.

Standard library only (socketserver + http.server), off by default. Endpoints:

  GET  /             HTML page: the stream plus Top-3, latency and FPS (polls /api/latest)
  GET  /stream.mjpg  multipart/x-mixed-replace JPEGs, at most max_fps
  GET  /latest.jpg   newest annotated frame (503 before the first)
  GET  /api/latest   JSON: latest result payload, FPS, stats, health
  GET  /health       200 + JSON while healthy, 503 + JSON with the reason otherwise
  GET  /metrics      Prometheus text format
  GET  /classify     a small upload form
  POST /classify     an image (image/* body or multipart/form-data) -> JSON Top-k

With ``auth.username`` set every request except GET /health needs HTTP basic
auth, unknown paths included. Modules:

  server.py     HttpPreview (start/stop), the accept thread and worker pool, the 503 refuser
  limits.py     connection/stream/classify limits, the busy log, the per-request deadline
  handler.py    one request: guards in order, dispatch, responses
  guards.py     Host and Origin checks, basic auth, credentials
  routes.py     the endpoints and the ROUTES table
  upload.py     content type, body and multipart parsing for uploads
  imageinfo.py  image format and size from the header, and the (reduced) decode
"""

from edgecam.web.guards import load_credentials
from edgecam.web.server import HttpPreview

__all__ = ["HttpPreview", "load_credentials"]
