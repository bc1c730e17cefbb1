"""The endpoints: one function per route, and the table that maps path and
method to them.

A route is ``fn(req)`` where ``req`` is a ``request.Request``: ``req.app`` (the
web app: cfg, hub, control, limits), ``req.query`` (parsed query string,
e.g. ``req.query.get("camera")``), ``req.headers``, ``req.rfile``, and
``req.send_json`` / ``req.send_bytes``. It raises HttpError (or Busy) for
any refusal; guards (Host, Origin, auth) already ran. To add one, write the
function and add a line to ROUTES; ``public=True`` skips auth (only /health).
"""

from __future__ import annotations

import time
from functools import lru_cache
from importlib import resources

import numpy as np

from edgecam.errors import EdgecamError
from edgecam.model.types import Label
from edgecam.web import classes_routes, imageinfo, metrics, train_routes
from edgecam.web.errors import HttpError
from edgecam.web.request import Request, Route
from edgecam.web.upload import multipart_file, read_body, upload_kind

BOUNDARY = "edgecamframe"
STREAM_POLL_S = 0.25  # how often an idle stream re-checks the stop event
CAMERA_GAP_WAIT_S = 0.1  # longest an upload waits for the next camera result (not at all while paused)


@lru_cache(maxsize=4)
def _static(name: str) -> bytes:
    return resources.files("edgecam.web").joinpath("static", name).read_bytes()


def page_index(req: Request) -> None:
    req.send_bytes(200, _static("index.html"), "text/html; charset=utf-8")


def page_classify(req: Request) -> None:
    req.send_bytes(200, _static("classify.html"), "text/html; charset=utf-8")


def page_label(req: Request) -> None:
    req.send_bytes(200, _static("label.html"), "text/html; charset=utf-8")


def page_classes(req: Request) -> None:
    req.send_bytes(200, _static("classes.html"), "text/html; charset=utf-8")


def script_classes(req: Request) -> None:
    req.send_bytes(200, _static("classes.js"), "text/javascript; charset=utf-8")


def _camera(req: Request) -> "str | None":
    values = req.query.get("camera")
    return values[0] if values else None


def latest_jpg(req: Request) -> None:
    jpeg = req.app.hub_for(_camera(req)).latest_jpeg()
    if jpeg is None:
        raise HttpError(503, "no frame yet")
    req.send_bytes(200, jpeg, "image/jpeg")


def api_latest(req: Request) -> None:
    req.send_json(200, req.app.latest_payload())


def health(req: Request) -> None:
    ok, reason = req.app.control.health()
    req.send_json(200 if ok else 503, {"ok": bool(ok), "reason": reason, "int8": req.app.control.int8_kernels()})


def prometheus(req: Request) -> None:
    req.send_bytes(200, req.app.metrics_text().encode("utf-8"), metrics.CONTENT_TYPE)


def stream(req: Request) -> None:
    """multipart/x-mixed-replace JPEGs at most max_fps, on one of max_streams slots
    (``?camera=NAME`` picks the camera, default the first)."""
    app = req.app
    hub = app.hub_for(_camera(req))
    with app.limits.stream_slot():
        req.close_connection = True
        req.send_response(200)
        req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        min_interval = 1.0 / app.cfg.max_fps
        version, last_sent = 0, float("-inf")
        while not app.stop_event.is_set():
            wait = last_sent + min_interval - time.monotonic()
            if wait > 0 and app.stop_event.wait(wait):
                break
            item = hub.wait_for_new(version, STREAM_POLL_S)
            if item is None:
                continue
            version, jpeg = item
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            req.wfile.write(head.encode("ascii") + jpeg + b"\r\n")
            last_sent = time.monotonic()


def classify(req: Request) -> None:
    """An image (raw body or form upload) -> Top-k. Checked before decoding:
    content type, length, format and declared pixels; decode + classify run on
    one of classify_concurrency threads."""
    app, cfg = req.app, req.app.cfg
    content_type = req.headers.get("Content-Type")
    kind = upload_kind(content_type)
    body = read_body(req.rfile, req.headers.get("Content-Length"), cfg.max_upload_bytes)
    data = multipart_file(content_type or "", body) if kind == "multipart" else body
    del body
    info = imageinfo.sniff(data)
    imageinfo.check_pixels(info, cfg.max_image_pixels)

    def decode_and_classify() -> tuple[np.ndarray, list[Label], float]:
        # Right after a camera result: in the camera's idle time before its next
        # frame, so uploads take little of its rate.
        app.hub.wait_for_next_result(CAMERA_GAP_WAIT_S)
        image = imageinfo.decode(data, info)
        try:
            found, took_ms = app.control.classify_image(image)
        except EdgecamError as err:
            raise HttpError(503, str(err)) from None
        return image, found, took_ms

    bgr, labels, ms = app.limits.run_classify(decode_and_classify)
    width, height = info.width, info.height
    if (bgr.shape[1] > bgr.shape[0]) != (width > height):  # EXIF orientation turned it
        width, height = height, width
    top = [{"label": t.label, "index": int(t.index), "score": round(float(t.score), 5)} for t in labels]
    req.send_json(200, {"top": top, "ms": round(float(ms), 3), "width": width, "height": height})


ROUTES: dict[str, dict[str, Route]] = {
    "/": {"GET": Route(page_index)},
    "/index.html": {"GET": Route(page_index)},
    "/classify": {"GET": Route(page_classify), "POST": Route(classify)},
    "/stream.mjpg": {"GET": Route(stream)},
    "/latest.jpg": {"GET": Route(latest_jpg)},
    "/api/latest": {"GET": Route(api_latest)},
    "/health": {"GET": Route(health, public=True)},
    "/metrics": {"GET": Route(prometheus)},
    "/label": {"GET": Route(page_label)},
    "/api/samples": {"GET": Route(train_routes.api_samples), "POST": Route(train_routes.api_change_samples)},
    "/api/sample.jpg": {"GET": Route(train_routes.api_sample_jpg)},
    "/api/capture": {"POST": Route(train_routes.api_capture)},
    "/api/reload": {"POST": Route(train_routes.api_reload)},
    "/api/config": {"POST": Route(train_routes.api_config)},
    "/api/model": {"POST": Route(train_routes.api_model)},
    "/classes": {"GET": Route(page_classes)},
    "/classes.js": {"GET": Route(script_classes)},
    "/api/region": {"GET": Route(classes_routes.api_region_info), "POST": Route(classes_routes.api_define_region)},
    "/api/burst": {"POST": Route(classes_routes.api_burst)},
    "/api/crop.jpg": {"GET": Route(classes_routes.api_crop_jpg)},
    "/api/suggest": {"POST": Route(classes_routes.api_suggest)},
    "/api/train": {"GET": Route(classes_routes.api_train_status), "POST": Route(classes_routes.api_train)},
    "/api/train/cancel": {"POST": Route(classes_routes.api_train_cancel)},
    "/api/train/confusion.png": {"GET": Route(classes_routes.api_confusion_png)},
    "/api/deploy": {"POST": Route(classes_routes.api_deploy)},
    "/api/rollback": {"POST": Route(classes_routes.api_rollback)},
}
