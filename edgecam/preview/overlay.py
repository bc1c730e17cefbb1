"""Draw the Top-k, latency and FPS (and each region's box, label and state) onto a
copy of a frame for the preview.

Only numpy and OpenCV: this runs in the daemon. The input frame is never
written to (it may be a view into the capture ring buffer); the caller gets a
new array. Frames narrower than ``MIN_WIDTH`` are upscaled first so the text
stays legible on a 160x120 lores stream.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import cv2
import numpy as np

from edgecam.model.types import Label
from edgecam.result import Result

MIN_WIDTH = 320  # annotated copies are at least this wide
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PANEL_DIM = 0.35  # panel keeps 35 % of the underlying brightness
_BAR_COLOURS = ((80, 200, 60), (60, 170, 230), (200, 140, 60))  # BGR, one per rank
_TEXT = (255, 255, 255)


def draw_overlay(frame_bgr: np.ndarray, result: Optional[Result], fps: Optional[float]) -> np.ndarray:
    """Return an annotated copy of ``frame_bgr`` (H x W x 3 uint8, BGR).

    Shows up to three labels with score bars, then one line with inference ms,
    end-to-end latency (``result.total_ms``) and FPS. ``result`` may be None
    (no classification yet): only the FPS line is drawn then.
    """
    out = _scaled_copy(frame_bgr)
    height, width = out.shape[:2]
    scale = _font_scale(width)
    thickness = 1 if scale < 0.6 else 2
    line_h = int(round(40 * scale)) + 6
    pad = max(3, line_h // 5)
    top = list(result.top[:3]) if result is not None else []
    rows = len(top) + 1
    panel_w = min(width, max(int(width * 0.6), int(360 * scale)))
    panel_h = min(height, rows * line_h + pad)
    _dim(out, 0, 0, panel_w, panel_h)
    for rank, item in enumerate(top):
        _draw_label_row(out, item, rank, rank * line_h + pad // 2, panel_w, line_h, pad, scale, thickness)
    status = _status_text(result, fps)
    baseline_y = len(top) * line_h + pad // 2 + int(line_h * 0.62)
    _put_fitted(out, status, (pad, baseline_y), panel_w - 2 * pad, scale, thickness)
    return out


_BOX = (60, 200, 255)  # BGR amber: region outlines


def draw_frame(frame_bgr: np.ndarray, boxes: Mapping[str, Sequence[float]], results: Mapping[str, Result],
               states: Mapping[str, str], fps: Optional[float]) -> np.ndarray:
    """The annotated preview of one camera frame.

    One full-frame region (the single-source layout): the Top-3 panel of
    ``draw_overlay``. Otherwise every region's box with its name, latest top-1
    and debounced state, plus the latency/FPS line."""
    if list(boxes) == ["full"] and tuple(boxes["full"]) == (0.0, 0.0, 1.0, 1.0):
        return draw_overlay(frame_bgr, results.get("full"), fps)
    out = _scaled_copy(frame_bgr)
    height, width = out.shape[:2]
    scale = _font_scale(width)
    thick = 1 if scale < 0.6 else 2
    for name, box in boxes.items():
        x1, y1 = int(box[0] * width), int(box[1] * height)
        x2, y2 = int(box[2] * width) - 1, int(box[3] * height) - 1
        cv2.rectangle(out, (x1, y1), (x2, y2), _BOX, thickness=thick)
        text = _region_text(name, results.get(name), states.get(name))
        line_h = int(round(30 * scale)) + 4
        _dim(out, x1, y1, min(width, x2), min(height, y1 + line_h))
        _put_fitted(out, text, (x1 + 3, y1 + int(line_h * 0.75)), max(10, x2 - x1 - 6), scale, thick)
    latest = max(results.values(), key=lambda r: r.inference_end, default=None)
    status = _status_text(latest, fps)
    line_h = int(round(30 * scale)) + 6
    _dim(out, 0, height - line_h, width, height)
    _put_fitted(out, status, (4, height - line_h // 4), width - 8, scale, thick)
    return out


def _region_text(name: str, result: Optional[Result], state: Optional[str]) -> str:
    parts = [name]
    if result is not None and result.top:
        parts.append(f"{result.top[0].label} {result.top[0].score:.2f}")
    if state is not None:
        parts.append(f"[{state}]")
    return " ".join(parts)


def _scaled_copy(frame_bgr: np.ndarray) -> np.ndarray:
    if frame_bgr.ndim == 2 and frame_bgr.dtype == np.uint8:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)  # grey uploads / test frames
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise ValueError(f"draw_overlay needs an HxWx3 uint8 BGR frame, got {frame_bgr.shape} {frame_bgr.dtype}")
    height, width = frame_bgr.shape[:2]
    if width >= MIN_WIDTH:
        return frame_bgr.copy()
    factor = MIN_WIDTH / width
    size = (MIN_WIDTH, max(1, int(round(height * factor))))
    return cv2.resize(frame_bgr, size, interpolation=cv2.INTER_LINEAR)


def _font_scale(width: int) -> float:
    """0.45 at 320 px, 0.6 at 640 px, capped at 1.2 for large frames."""
    return float(min(1.2, max(0.45, width / 1066.0)))


def _dim(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    roi = img[y0:y1, x0:x1]
    np.multiply(roi, _PANEL_DIM, out=roi, casting="unsafe")


def _draw_label_row(
    img: np.ndarray, item: Label, rank: int, y: int, panel_w: int, line_h: int, pad: int, scale: float, thick: int
) -> None:
    score = float(min(1.0, max(0.0, item.score)))
    bar_top, bar_bottom = y + int(line_h * 0.74), y + line_h - 2
    track_w = panel_w - 2 * pad
    cv2.rectangle(img, (pad, bar_top), (pad + track_w, bar_bottom), (70, 70, 70), thickness=-1)
    bar_w = int(round(track_w * score))
    if bar_w > 0:
        cv2.rectangle(img, (pad, bar_top), (pad + bar_w, bar_bottom), _BAR_COLOURS[rank % 3], thickness=-1)
    suffix = f" {score * 100:.1f}%"
    _put_fitted(img, item.label, (pad, y + int(line_h * 0.62)), track_w, scale, thick, suffix)


def _status_text(result: Optional[Result], fps: Optional[float]) -> str:
    parts: list[str] = []
    if result is not None:
        parts.append(f"inf {result.inference_ms:.1f}ms")
        parts.append(f"e2e {result.total_ms:.1f}ms")
    parts.append(f"{fps:.1f} fps" if fps is not None else "-- fps")
    return "  ".join(parts)


def _put_fitted(
    img: np.ndarray, text: str, org: tuple[int, int], max_w: int, scale: float, thick: int, suffix: str = ""
) -> None:
    """White text on the dimmed panel; ``text`` is shortened with '..' so that
    ``text + suffix`` fits ``max_w`` (the suffix, e.g. a score, always stays).
    No thick outline: OpenCV 5 renders heavier strokes wider, so they smear."""
    text = _fit(text, suffix, max_w, scale, thick)
    cv2.putText(img, text, org, _FONT, scale, _TEXT, thick, cv2.LINE_AA)


def _fit(text: str, suffix: str, max_w: int, scale: float, thick: int) -> str:
    if _text_width(text + suffix, scale, thick) <= max_w:
        return text + suffix
    for cut in range(len(text) - 1, 0, -1):
        candidate = text[:cut].rstrip() + ".." + suffix
        if _text_width(candidate, scale, thick) <= max_w:
            return candidate
    return text[:1] + ".." + suffix


def _text_width(text: str, scale: float, thick: int) -> int:
    (w, _h), _base = cv2.getTextSize(text, _FONT, scale, thick)
    return int(w)

