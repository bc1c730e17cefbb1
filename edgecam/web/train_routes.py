"""Routes for your own classes: the labelling page, collected samples, capture, and
deploying a model (reload, or an upload for one region).

Changing routes take a JSON body (``Content-Type: application/json``, which a
page on another site cannot send without a CORS preflight we never grant) and
pass the Origin check every POST gets. Uploading a model needs
``preview.http.auth``: a model decides what the camera reports.
"""

from __future__ import annotations

import json
from typing import Any

from edgecam.control.edits import parse_edits
from edgecam.dataset.collector import CaptureRateLimited
from edgecam.errors import ConfigConflict, ConfigError, EdgecamError, ModelError
from edgecam.web.errors import HttpError
from edgecam.web.request import Request
from edgecam.web.upload import read_body

JSON_LIMIT = 256 * 1024
#: A model upload that keeps arriving at least this fast is never cut off by request_timeout_s.
UPLOAD_MIN_BYTES_PER_S = 32 * 1024
MAX_IDS = 1000


def _param(req: Request, name: str) -> str:
    values = req.query.get(name)
    if not values or not values[0]:
        raise HttpError(400, f"missing ?{name}=")
    return values[0][:200]


def _read_json(req: Request) -> dict[str, Any]:
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
    except CaptureRateLimited as err:
        raise HttpError(429, str(err), {"Retry-After": "1"}) from None
    except ModelError as err:
        raise HttpError(422, str(err)) from None
    except ConfigError as err:
        raise HttpError(404, str(err)) from None
    except EdgecamError as err:
        raise HttpError(400, str(err)) from None


def api_samples(req: Request) -> None:
    req.send_json(200, _call(req.app.control.list_samples, _param(req, "camera"), _param(req, "region")))


def api_sample_jpg(req: Request) -> None:
    control = req.app.control
    jpeg = _call(control.sample_jpeg, _param(req, "camera"), _param(req, "region"), _param(req, "id"))
    req.send_bytes(200, jpeg, "image/jpeg")


def api_change_samples(req: Request) -> None:
    """{"camera", "region", "ids": [...], "label": NAME} labels them (or "inbox");
    {"camera", "region", "ids": [...], "delete": true} deletes them."""
    data = _read_json(req)
    camera, region, ids = _text(data, "camera"), _text(data, "region"), _ids(data)
    control = req.app.control
    if data.get("delete") is True:
        req.send_json(200, {"deleted": _call(control.delete_samples, camera, region, ids)})
    else:
        req.send_json(200, {"labelled": _call(control.label_samples, camera, region, ids, _text(data, "label"))})


def api_capture(req: Request) -> None:
    data = _read_json(req)
    control = req.app.control
    reply = _call(control.capture_sample, _text(data, "camera"), _text(data, "region"), _text(data, "label", False))
    req.send_json(200, reply)


def api_reload(req: Request) -> None:
    """Re-read the config file and apply it live (as SIGHUP does); 422 when it does not
    validate or a model does not load (then nothing changed)."""
    try:
        reply = req.app.control.reload()
    except (ConfigError, ModelError) as err:
        raise HttpError(422, str(err)) from None
    except EdgecamError as err:
        raise HttpError(503, str(err)) from None
    req.send_json(200, reply)


def api_config(req: Request) -> None:
    """Write a change into the config file and apply it live: ``{"set": {"cameras.garage.regions.
    door.box": [0.1, 0.2, 0.5, 0.9]}, "delete": ["cameras.garage.regions.old"]}``. Needs
    preview.http.auth (it rewrites the file the daemon starts from). 422 when the result does
    not validate: nothing is written."""
    if req.app.credentials is None:
        raise HttpError(403, "changing the config file needs preview.http.auth")
    try:
        edits = parse_edits(_read_json(req))
    except ConfigError as err:
        raise HttpError(400, str(err)) from None
    req.send_json(200, edit_config(req, edits))


def edit_config(req: Request, edits: dict[str, Any]) -> dict[str, Any]:
    """The control surface's ``edit_config``, its errors as HTTP: 409 the file changed meanwhile,
    422 the result does not validate or load, 503 anything else."""
    try:
        reply: dict[str, Any] = req.app.control.edit_config(edits)
    except ConfigConflict as err:
        raise HttpError(409, str(err)) from None
    except (ConfigError, ModelError) as err:
        raise HttpError(422, str(err)) from None
    except EdgecamError as err:
        raise HttpError(503, str(err)) from None
    return reply


def api_model(req: Request) -> None:
    """The ONNX file as the body (application/octet-stream) for ?camera=&region=."""
    if req.app.credentials is None:
        raise HttpError(403, "uploading a model needs preview.http.auth (a model decides what the camera reports)")
    media = (req.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media != "application/octet-stream":
        raise HttpError(415, "send the .onnx file as the body with Content-Type: application/octet-stream")
    camera, region = _param(req, "camera"), _param(req, "region")
    req.follow_progress(UPLOAD_MIN_BYTES_PER_S)  # up to 100 MB: the time limit follows progress
    data = read_body(req.rfile, req.headers.get("Content-Length"), req.app.cfg.max_model_bytes)
    req.send_json(200, _call(req.app.control.upload_model, camera, region, data))
