"""The confusion matrix as a PNG, drawn with OpenCV (no matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edgecam.errors import ModelBuildError

FONT = cv2.FONT_HERSHEY_SIMPLEX
CELL = 64
MARGIN = 12
WHITE, BLACK = (255, 255, 255), (30, 30, 30)
RIGHT = np.array([70, 160, 40], np.float32)  # BGR green: correct (diagonal)
WRONG = np.array([40, 40, 200], np.float32)  # BGR red: confused


def _ascii(text: str, limit: int = 24) -> str:
    """Hershey fonts draw ASCII only."""
    text = text.encode("ascii", "replace").decode()
    return text if len(text) <= limit else text[: limit - 2] + ".."


def _text_size(text: str, scale: float) -> tuple[int, int]:
    (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
    return w, h + base


def _vertical_label(text: str, scale: float, height: int) -> np.ndarray:
    """The text turned 90 degrees (reads bottom to top), on a white strip."""
    w, h = _text_size(text, scale)
    strip = np.full((h + 4, max(w + 4, height)), 255, np.uint8)
    cv2.putText(strip, text, (2, h - 2), FONT, scale, 0, 1, cv2.LINE_AA)
    return cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)


def confusion_image(matrix: np.ndarray, labels: Sequence[str], title: str) -> np.ndarray:
    """BGR image: cells coloured by the share of their row (recall), counts written in."""
    n = len(labels)
    names = [_ascii(label) for label in labels]
    scale = 0.5
    left = max(_text_size(name, scale)[0] for name in names) + 2 * MARGIN
    top_strip = max(_text_size(name, scale)[0] for name in names) + MARGIN
    title_h = 2 * _text_size(title, scale)[1] + MARGIN
    width = max(left + n * CELL + MARGIN, _text_size(title, scale)[0] + 2 * MARGIN)
    height = title_h + top_strip + n * CELL + _text_size("x", scale)[1] + 3 * MARGIN
    img = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(img, _ascii(title, 120), (MARGIN, title_h // 2 + 4), FONT, scale, BLACK, 1, cv2.LINE_AA)
    y0 = title_h + top_strip
    rows = matrix.sum(axis=1, keepdims=True).astype(np.float32)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, np.float32), where=rows > 0)
    for i in range(n):
        cv2.putText(img, names[i], (MARGIN, y0 + i * CELL + CELL // 2 + 5), FONT, scale, BLACK, 1, cv2.LINE_AA)
        label = _vertical_label(names[i], scale, 1)
        lh, lw = label.shape
        x = left + i * CELL + (CELL - lw) // 2
        img[y0 - lh - 4 : y0 - 4, x : x + lw] = label[:, :, None]
        for j in range(n):
            base = RIGHT if i == j else WRONG
            colour = (255 - (255 - base) * share[i, j]).astype(np.uint8).tolist()
            p0 = (left + j * CELL, y0 + i * CELL)
            cv2.rectangle(img, p0, (p0[0] + CELL - 2, p0[1] + CELL - 2), colour, -1)
            count = str(int(matrix[i, j]))
            tw, th = _text_size(count, 0.6)
            ink = WHITE if share[i, j] > 0.55 else BLACK
            cv2.putText(img, count, (p0[0] + (CELL - tw) // 2, p0[1] + (CELL + th) // 2 - 4),
                        FONT, 0.6, ink, 1, cv2.LINE_AA)
    legend = "rows: true class   columns: predicted class"
    cv2.putText(img, legend, (MARGIN, height - MARGIN), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    return img


def write_confusion_png(matrix: np.ndarray, labels: Sequence[str], title: str, path: Path) -> None:
    if not cv2.imwrite(str(path), confusion_image(np.asarray(matrix), labels, title)):
        raise ModelBuildError(f"cannot write {path}")
