"""Routes for "your own classes" (the /classes page): define a region, burst-collect its
crops, suggestions for labelling, train, deploy and roll back, all behind the web app's auth.

Changing the config (a region, a deployed model, a rollback) goes through the daemon's
control surface (``edit_config``, ``upload_model``), which applies it live; these routes
need ``preview.http.auth`` as /api/config and /api/model do. Training runs as a child
process (``train_job.Trainer``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from edgecam.web.errors import HttpError
from edgecam.web.request import Request
from edgecam.web.train_job import model_name
from edgecam.web.train_routes import _call, _ids, _param, _read_json, _text, edit_config

TRIGGERS = ("every", "interval", "motion")
MAX_SUGGEST = 50  # per request: a few seconds of a Pi's model time
#: Next to a deployed file: the model the region ran before it (what "roll back" goes back to;
#: a rolled-back-to upload has its own, so rollbacks walk back through the deploys).
PREVIOUS_SUFFIX = ".previous"


def _previous(model: str) -> Optional[str]:
    try:
        text = Path(model + PREVIOUS_SUFFIX).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def _needs_auth(req: Request, what: str) -> None:
    if req.app.credentials is None:
        raise HttpError(403, f"{what} needs preview.http.auth (it changes what the camera reports)")


def _number(data: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise HttpError(400, f"{key!r} must be a number from {low:g} to {high:g}")
    return float(value)


def api_region_info(req: Request) -> None:
    """Where a region's samples and models are, and its box, trigger and confirm as they run."""
    camera, region = _param(req, "camera"), _param(req, "region")
    files = _call(req.app.control.region_files, camera, region)
    req.send_json(200, {**files, "previous": _previous(files["model"])})


def api_define_region(req: Request) -> None:
    """``{"camera", "region", "box": [x1, y1, x2, y2], "trigger", "confirm", "interval_s"}``: the
    region written into the config file (added or changed) and running at once."""
    _needs_auth(req, "defining a region")
    data = _read_json(req)
    camera, region = _text(data, "camera"), _text(data, "region")
    box = data.get("box")
    if not (isinstance(box, list) and len(box) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
        raise HttpError(400, "'box' must be [x1, y1, x2, y2], fractions of the frame")
    trigger = data.get("trigger", "every")
    if trigger not in TRIGGERS:
        raise HttpError(400, f"'trigger' must be one of {', '.join(TRIGGERS)}")
    key = f"cameras.{camera}.regions.{region}"
    edits: dict[str, Any] = {f"{key}.box": [round(float(v), 4) for v in box], f"{key}.trigger": trigger,
                             f"{key}.confirm": int(_number(data, "confirm", 3, 1, 100))}
    if trigger == "interval":
        edits[f"{key}.interval_s"] = _number(data, "interval_s", 5.0, 0.1, 86400)
    reply = edit_config(req, edits)
    req.send_json(200, {**reply, "camera": camera, "region": region, "box": edits[f"{key}.box"]})


def api_crop_jpg(req: Request) -> None:
    """The region's live crop, as the collector would save it."""
    jpeg = _call(req.app.control.crop_jpeg, _param(req, "camera"), _param(req, "region"))
    req.send_bytes(200, jpeg, "image/jpeg")


def api_burst(req: Request) -> None:
    """``{"camera", "region", "count": N, "seconds": M}``: N crops over M seconds, in the background."""
    data = _read_json(req)
    camera, region = _text(data, "camera"), _text(data, "region")
    count, seconds = int(_number(data, "count", 20, 1, 200)), _number(data, "seconds", 10, 0, 600)
    req.send_json(202, _call(req.app.control.burst, camera, region, count, seconds))


def api_suggest(req: Request) -> None:
    """``{"camera", "region", "ids"}``: the running model's guess for each sample."""
    data = _read_json(req)
    camera, region, ids = _text(data, "camera"), _text(data, "region"), _ids(data)
    if len(ids) > MAX_SUGGEST:
        raise HttpError(400, f"ask for at most {MAX_SUGGEST} samples at a time")
    # on the classify threads (preview.http.classify_concurrency), like an uploaded picture
    reply = req.app.limits.run_classify(lambda: _call(req.app.control.suggest, camera, region, ids))
    req.send_json(200, reply)


def api_train(req: Request) -> None:
    """``{"camera", "region", "force": false}``: start training the region's model."""
    _needs_auth(req, "training")
    data = _read_json(req)
    camera, region = _text(data, "camera"), _text(data, "region")
    files = _call(req.app.control.region_files, camera, region)
    try:
        job = req.app.trainer.start(camera, region, files, force=data.get("force") is True)
    except RuntimeError as err:
        raise HttpError(409, str(err)) from None
    req.send_json(202, job.payload())


def api_train_status(req: Request) -> None:
    camera, region = _param(req, "camera"), _param(req, "region")
    job = req.app.trainer.current(camera, region)
    req.send_json(200, job.payload() if job is not None else {"camera": camera, "region": region, "state": "idle"})


def api_train_cancel(req: Request) -> None:
    data = _read_json(req)
    job = req.app.trainer.current(_text(data, "camera"), _text(data, "region"))
    if job is None or not job.running:
        raise HttpError(409, "no training of this region is running")
    job.cancel()
    req.send_json(200, {"state": "cancelling", "pid": job.proc.pid})


def api_confusion_png(req: Request) -> None:
    job = req.app.trainer.current(_param(req, "camera"), _param(req, "region"))
    if job is None or job.done is None:
        raise HttpError(404, "no finished training of this region")
    try:
        req.send_bytes(200, Path(str(job.done.get("png"))).read_bytes(), "image/png")
    except OSError:
        raise HttpError(404, "the confusion matrix is gone") from None


def _trained_file(req: Request, camera: str, region: str) -> Path:
    job = req.app.trainer.current(camera, region)
    if job is not None and job.running:
        raise HttpError(409, "training is still running")
    if job is not None and job.done is not None:
        return Path(str(job.done["int8"]))
    files = _call(req.app.control.region_files, camera, region)
    return Path(files["models"]) / f"{model_name(camera, region)}_int8.onnx"


def api_deploy(req: Request) -> None:
    """``{"camera", "region"}``: the region's trained INT8 model, through the checked deploy
    (loaded, swapped live, on probation, kept in the config); the previous one is kept."""
    _needs_auth(req, "deploying a model")
    data = _read_json(req)
    camera, region = _text(data, "camera"), _text(data, "region")
    path = _trained_file(req, camera, region)
    try:
        model = path.read_bytes()
    except OSError:
        raise HttpError(404, f"no trained model for {camera}/{region} ({path.name}): train it first") from None
    if len(model) > req.app.cfg.max_model_bytes:
        raise HttpError(413, f"{path.name} is larger than preview.http.max_model_bytes")
    reply = _call(req.app.control.upload_model, camera, region, model)
    if reply.get("previous") and not reply.get("rolled_back"):
        try:
            Path(str(reply["model"]) + PREVIOUS_SUFFIX).write_text(str(reply["previous"]) + "\n", encoding="utf-8")
        except OSError as err:
            reply["rollback_error"] = f"the previous model is not remembered for roll back: {err.strerror or err}"
    req.send_json(200, {**reply, "trained": str(path)})


def api_rollback(req: Request) -> None:
    """``{"camera", "region"}``: back to the model the region ran before the last deploy."""
    _needs_auth(req, "rolling back a model")
    data = _read_json(req)
    camera, region = _text(data, "camera"), _text(data, "region")
    files = _call(req.app.control.region_files, camera, region)
    previous = _previous(files["model"])
    if previous is None:
        raise HttpError(409, f"{camera}/{region} runs {Path(files['model']).name}, which no deploy from this "
                             "page replaced anything with: nothing to roll back to")
    reply = edit_config(req, {f"{files['key']}.model": previous})
    req.send_json(200, {**reply, "model": previous})
