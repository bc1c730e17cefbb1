"""Routes for your own classes: the labelling page, collected samples, capture, and
deploying a model (reload, or an upload for one region).

Changing routes take a JSON body (``Content-Type: application/json``, which a
page on another site cannot send without a CORS preflight we never grant) and
pass the Origin check every POST gets. Uploading a model needs
``preview.http.auth``: a model decides what the camera reports.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from edgecam.errors import ConfigError, EdgecamError, ModelError
from edgecam.web.errors import HttpError
from edgecam.web.upload import read_body

if TYPE_CHECKING:
    from edgecam.web.handler import Handler

JSON_LIMIT = 256 * 1024
MAX_IDS = 1000


def _param(req: "Handler", name: str) -> str:
    values = req.query.get(name)
    if not values or not values[0]:
        raise HttpError(400, f"missing ?{name}=")
    return values[0][:200]


def _read_json(req: "Handler") -> dict[str, Any]:
    media = (req.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise HttpError(415, "send a JSON body with Content-Type: application/json")
    body = read_body(req.rfile, req.headers.get("Content-Length"), JSON_LIMIT)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise HttpError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HttpError(400, "the body must be a JSON object")
    return data


def _text(data: dict[str, Any], key: str, required: bool = True) -> Any:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise HttpError(400, f"{key!r} must be a non-empty string")
    return value


def _ids(data: dict[str, Any]) -> list[str]:
    ids = data.get("ids")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS or not all(isinstance(i, str) for i in ids):
        raise HttpError(400, f"'ids' must be a list of 1 to {MAX_IDS} sample ids")
    return ids


def _call(fn: Any, *args: Any) -> Any:
    """Control calls: a bad name or a refused file is the client's 4xx, never a 500."""
    try:
        return fn(*args)
    except ModelError as err:
        raise HttpError(422, str(err)) from None
    except ConfigError as err:
        raise HttpError(404, str(err)) from None
    except EdgecamError as err:
        raise HttpError(400, str(err)) from None


def page_label(req: "Handler") -> None:
    from edgecam.web.routes import _static

    req.send_bytes(200, _static("label.html"), "text/html; charset=utf-8")


def api_samples(req: "Handler") -> None:
    req.send_json(200, _call(req.app.control.list_samples, _param(req, "camera"), _param(req, "region")))


def api_sample_jpg(req: "Handler") -> None:
    control = req.app.control
    jpeg = _call(control.sample_jpeg, _param(req, "camera"), _param(req, "region"), _param(req, "id"))
    req.send_bytes(200, jpeg, "image/jpeg")


def api_change_samples(req: "Handler") -> None:
    """{"camera", "region", "ids": [...], "label": NAME} labels them (or "inbox");
    {"camera", "region", "ids": [...], "delete": true} deletes them."""
    data = _read_json(req)
    camera, region, ids = _text(data, "camera"), _text(data, "region"), _ids(data)
    control = req.app.control
    if data.get("delete") is True:
        req.send_json(200, {"deleted": _call(control.delete_samples, camera, region, ids)})
    else:
        req.send_json(200, {"labelled": _call(control.label_samples, camera, region, ids, _text(data, "label"))})


def api_capture(req: "Handler") -> None:
    data = _read_json(req)
    control = req.app.control
    reply = _call(control.capture_sample, _text(data, "camera"), _text(data, "region"), _text(data, "label", False))
    req.send_json(200, reply)


def api_reload(req: "Handler") -> None:
    reply = req.app.control.reload_models()
    req.send_json(200 if not reply["errors"] else 422, reply)


def api_model(req: "Handler") -> None:
    """The ONNX file as the body (application/octet-stream) for ?camera=&region=."""
    if req.app.credentials is None:
        raise HttpError(403, "uploading a model needs preview.http.auth (a model decides what the camera reports)")
    media = (req.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media != "application/octet-stream":
        raise HttpError(415, "send the .onnx file as the body with Content-Type: application/octet-stream")
    camera, region = _param(req, "camera"), _param(req, "region")
    data = read_body(req.rfile, req.headers.get("Content-Length"), req.app.cfg.max_model_bytes)
    req.send_json(200, _call(req.app.control.upload_model, camera, region, data))
