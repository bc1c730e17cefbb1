"""draw_overlay: annotated copy, never touching the input, readable at any size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecam.model.types import Label
from edgecam.preview.overlay import MIN_WIDTH, draw_overlay
from tests.support.web_control import chelsea_bgr, coffee_bgr, make_result


def _bright_pixels(img: np.ndarray, box: tuple[int, int, int, int]) -> int:
    x0, y0, x1, y1 = box
    grey = cv2.cvtColor(img[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    return int((grey > 200).sum())


def test_input_frame_is_unchanged_and_output_is_a_new_array() -> None:
    frame = cv2.resize(chelsea_bgr(), (640, 480))
    before = frame.copy()
    out = draw_overlay(frame, make_result(1, frame), 15.0)
    assert np.array_equal(frame, before)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, frame)


def test_overlay_changes_only_the_panel_region() -> None:
    frame = cv2.resize(coffee_bgr(), (640, 480))
    out = draw_overlay(frame, make_result(1, frame), 12.0)
    diff = np.abs(out.astype(int) - frame.astype(int)).sum(axis=2)
    ys, xs = np.nonzero(diff)
    assert ys.size > 0
    # Panel in the top-left; the bottom half of the frame stays untouched.
    assert ys.max() < 240 and xs.min() < 20
    assert np.array_equal(out[300:], frame[300:])


def test_text_is_drawn_as_bright_pixels_on_the_dimmed_panel() -> None:
    # A flat mid-grey frame has no bright pixels: every one after drawing is text.
    frame = np.full((480, 640, 3), 128, np.uint8)
    out = draw_overlay(frame, make_result(1, frame), 9.5)
    panel = (0, 0, 380, 130)
    assert _bright_pixels(frame, panel) == 0
    assert _bright_pixels(out, panel) > 300
    # The panel background itself is darker than the frame.
    assert out[2, 375].mean() < 128 * 0.5


def test_rows_follow_the_number_of_labels_and_scores_set_bar_length() -> None:
    frame = np.full((480, 640, 3), 128, np.uint8)
    one = draw_overlay(frame, make_result(1, frame, top=(Label("cup", 968, 0.9),)), None)
    three = draw_overlay(frame, make_result(1, frame), None)
    changed = lambda img: int(np.nonzero(np.abs(img.astype(int) - 128).sum(axis=2))[0].max())  # noqa: E731
    assert changed(three) > changed(one) + 40  # two more rows

    high = draw_overlay(frame, make_result(1, frame, top=(Label("cup", 968, 0.95),)), None)
    low = draw_overlay(frame, make_result(1, frame, top=(Label("cup", 968, 0.10),)), None)
    green = lambda img: int(((img[:, :, 1] > 150) & (img[:, :, 0] < 120) & (img[:, :, 2] < 120)).sum())  # noqa: E731
    assert green(high) > 4 * green(low) > 0


def test_small_frames_are_upscaled_to_stay_readable() -> None:
    frame = cv2.resize(chelsea_bgr(), (160, 120))
    out = draw_overlay(frame, make_result(1, frame), 30.0)
    assert out.shape[1] == MIN_WIDTH and out.shape[0] == 240
    assert _bright_pixels(out, (0, 0, MIN_WIDTH, 100)) > _bright_pixels(cv2.resize(frame, (320, 240)), (0, 0, 320, 100))


def test_long_labels_are_shortened_and_no_result_still_shows_fps() -> None:
    frame = np.full((240, 320, 3), 128, np.uint8)
    long_label = (Label("an extremely long label " * 5, 1, 0.5),)
    out = draw_overlay(frame, make_result(1, frame, top=long_label), 20.0)
    assert out.shape == frame.shape
    empty = draw_overlay(frame, None, 20.0)
    assert _bright_pixels(empty, (0, 0, 320, 40)) > 20


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint16), np.zeros((10, 10, 3), np.float32)])
def test_rejects_non_bgr_frames_with_a_clear_message(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_overlay(bad, None, None)


def test_grey_frames_are_drawn_in_colour() -> None:
    grey = np.full((240, 320), 100, np.uint8)
    out = draw_overlay(grey, make_result(1, np.dstack([grey] * 3)), 10.0)
    assert out.shape == (240, 320, 3) and out.dtype == np.uint8
    assert _bright_pixels(out, (0, 0, 320, 40)) > 20  # the text panel is there
