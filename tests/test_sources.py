"""Frame sources: OpenCV files and streams, the demo clip, picamera2 (against its thin fake)."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from edgecam.config import SourceConfig
from edgecam.errors import ConfigError, EndOfStream, SourceError
from edgecam.sources.demo import SECONDS_PER_PHOTO, DemoSource
from edgecam.sources.factory import make_source
from edgecam.sources.opencv_source import OpenCVSource
from edgecam.sources.picamera2_source import Picamera2Source, shutdown_picamera2

FAKE_PICAMERA2_DIR = Path(__file__).parent / "support" / "fake_picamera2"
VIDEO_FRAMES = 30
VIDEO_FPS = 20.0
STEP = 8  # frame i is a flat grey of value i * STEP


def write_test_video(path: Path, frames: int = VIDEO_FRAMES, fps: float = VIDEO_FPS) -> Path:
    """An MJPG .avi whose frame i is flat grey i * STEP, so a read frame tells its index."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG .avi"
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * STEP, np.uint8))
    writer.release()
    return path


def frame_index(image: np.ndarray) -> int:
    return int(round(float(image.mean()) / STEP))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_test_video(tmp_path / "clip.avi")


def file_source(path: Path, **kw: object) -> OpenCVSource:
    source = make_source(SourceConfig(uri=str(path), **kw))
    assert isinstance(source, OpenCVSource) and source.kind == "file"
    return source


# -- factory --------------------------------------------------------------------------

def test_auto_type_follows_the_uri() -> None:
    assert isinstance(make_source(SourceConfig(uri="demo")), DemoSource)
    assert isinstance(make_source(SourceConfig(uri="picamera2")), Picamera2Source)
    assert make_source(SourceConfig(uri="0")).kind == "device"
    assert make_source(SourceConfig(uri="/dev/video2")).kind == "device"
    assert make_source(SourceConfig(uri="clips/a.mp4")).kind == "file"
    stream = make_source(SourceConfig(uri="rtsp://admin:hunter2@cam.local:554/live"))
    assert stream.kind == "stream"
    assert "hunter2" not in stream.source_id and "admin:***@cam.local:554" in stream.source_id
    assert isinstance(make_source(SourceConfig(uri="whatever", type="demo")), DemoSource)


# -- video files ----------------------------------------------------------------------

def test_file_paced_at_its_native_rate(video: Path) -> None:
    source = file_source(video)
    source.open()
    try:
        stamps = []
        for _ in range(11):
            source.read()
            stamps.append(time.monotonic())
    finally:
        source.close()
    intervals = np.diff(stamps)
    assert source.native_fps == pytest.approx(VIDEO_FPS)
    assert statistics.median(intervals) == pytest.approx(1 / VIDEO_FPS, abs=0.015)
    # Deadlines, not sleeps: ten intervals add up to 10/fps without drift.
    assert stamps[-1] - stamps[0] == pytest.approx(10 / VIDEO_FPS, abs=0.06)


def test_file_unpaced_loops_and_keeps_order(video: Path) -> None:
    source = file_source(video, pace=False, loop=True)
    source.open()
    start = time.monotonic()
    try:
        frames = [source.read() for _ in range(VIDEO_FRAMES + 15)]
    finally:
        source.close()
    assert time.monotonic() - start < VIDEO_FRAMES / VIDEO_FPS / 2, "unpaced reads must not wait"
    assert [frame_index(f) for f in frames] == list(range(VIDEO_FRAMES)) + list(range(15))
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)


def test_file_without_loop_ends_with_end_of_stream(video: Path) -> None:
    source = file_source(video, pace=False, loop=False)
    source.open()
    indexes = [frame_index(source.read()) for _ in range(VIDEO_FRAMES)]
    with pytest.raises(EndOfStream, match="end of video file"):
        source.read()
    source.close()
    assert indexes == list(range(VIDEO_FRAMES))


def test_file_moved_away_raises_and_reads_again_when_back(video: Path, tmp_path: Path) -> None:
    source = file_source(video, pace=False)
    source.open()
    source.read()
    away = tmp_path / "elsewhere.avi"
    video.rename(away)
    with pytest.raises(SourceError, match="is gone"):
        source.read()
    source.close()
    with pytest.raises(SourceError, match="not found"):
        source.open()
    away.rename(video)
    source.open()
    assert frame_index(source.read()) == 0
    source.close()
    source.close()  # twice is fine


def test_unreadable_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="missing.avi not found"):
        file_source(tmp_path / "missing.avi").open()
    junk = tmp_path / "notes.avi"
    junk.write_text("not a video")
    with pytest.raises(SourceError, match="cannot open video file"):
        file_source(junk).open()


def test_missing_camera_device_gives_a_clear_error() -> None:
    source = make_source(SourceConfig(uri="97"))
    with pytest.raises(SourceError, match="cannot open camera device 97"):
        source.open()
    source.close()


# -- streams --------------------------------------------------------------------------

class StallingMjpegServer:
    """A real MJPEG-over-HTTP server on loopback: sends ``frames`` JPEGs, then goes silent."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.release = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/video.mjpg"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n")
            for i in range(self.frames):
                jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), i * STEP, np.uint8))[1].tobytes()
                conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                             % (len(jpeg), jpeg))
            self.release.wait(20)

    def close(self) -> None:
        self.release.set()
        self.sock.close()


def test_stream_that_goes_silent_raises_after_read_timeout() -> None:
    server = StallingMjpegServer(frames=5)
    source = make_source(SourceConfig(uri=server.url, read_timeout_s=1.0))
    try:
        source.open()
        assert [frame_index(source.read()) for _ in range(5)] == [0, 1, 2, 3, 4]
        start = time.monotonic()
        with pytest.raises(SourceError, match=r"no frame from http://127\.0\.0\.1:\d+/video\.mjpg for 1\.0 s"):
            source.read()
        assert 0.9 <= time.monotonic() - start < 2.0
    finally:
        source.close()
        server.close()


def test_unreachable_stream_fails_to_open() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again before the source connects
    source = make_source(SourceConfig(uri=f"http://127.0.0.1:{port}/x.mjpg", read_timeout_s=1.0))
    with pytest.raises(SourceError, match="cannot open stream"):
        source.open()


# -- demo -----------------------------------------------------------------------------

def demo(**kw: object) -> DemoSource:
    source = make_source(SourceConfig(uri="demo", **kw))
    assert isinstance(source, DemoSource)
    source.open()
    return source


def best_match(frame: np.ndarray, photo_bgr: np.ndarray) -> float:
    """Normalised correlation of the frame, scaled to the largest 4:3 crop, anywhere in the photo."""
    h = min(photo_bgr.shape[0], int(photo_bgr.shape[1] * 3 / 4))
    template = cv2.resize(frame, (h * 4 // 3, h), interpolation=cv2.INTER_AREA)
    return float(cv2.matchTemplate(photo_bgr, template, cv2.TM_CCOEFF_NORMED).max())


def test_demo_frames_are_640x480_bgr_from_real_photos_and_move() -> None:
    from skimage import data  # tests may import scikit-image; the daemon never does

    fps = 10.0
    source = demo(fps=fps, pace=False)
    frames = [source.read() for _ in range(int(SECONDS_PER_PHOTO * fps) + 1)]
    names = source.photo_names
    source.close()
    assert names[:2] == ["chelsea", "coffee"]
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in frames)
    chelsea = cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)
    coffee = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    # The first frame of each photo is an unzoomed crop of it.
    assert best_match(frames[0], chelsea) > 0.9
    assert best_match(frames[0], coffee) < 0.5
    assert best_match(frames[-1], coffee) > 0.9
    # It moves: consecutive frames differ a little, frames a second apart clearly.
    assert 0 < np.abs(frames[1].astype(int) - frames[0]).mean() < 10
    assert np.abs(frames[10].astype(int) - frames[0]).mean() > 3


def test_demo_shows_the_cat_for_most_of_its_segment() -> None:
    source = demo(fps=5.0, pace=False)
    seen = []
    for _ in range(int(2 * SECONDS_PER_PHOTO * 5)):
        source.read()
        seen.append(source.last_photo)
    source.close()
    per_photo = int(SECONDS_PER_PHOTO * 5)
    assert seen[: per_photo - 3].count("chelsea") == per_photo - 3
    assert seen[per_photo] == "coffee"


def test_demo_is_paced_like_a_camera() -> None:
    source = demo(fps=20.0)
    stamps = []
    for _ in range(7):
        source.read()
        stamps.append(time.monotonic())
    source.close()
    assert stamps[-1] - stamps[0] == pytest.approx(6 / 20.0, abs=0.06)


def test_demo_without_scikit_image_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes scikit-image unfindable
    source = make_source(SourceConfig(uri="demo"))
    with pytest.raises(SourceError, match="install scikit-image"):
        source.open()


def test_demo_does_not_import_scikit_image() -> None:
    code = ("import sys; from edgecam.config import SourceConfig; from edgecam.sources.factory import make_source;"
            "s = make_source(SourceConfig(uri='demo', pace=False)); s.open(); s.read(); s.close();"
            "print('skimage' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


# -- picamera2 (the only fake in the suite: tests/support/fake_picamera2/picamera2.py) ---------

@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    monkeypatch.syspath_prepend(str(FAKE_PICAMERA2_DIR))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2

    assert "THE ONLY FAKE" in (picamera2.__doc__ or "")
    cls = picamera2.Picamera2
    cls.instances = cls.open_requests = cls.requests = 0
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)  # smooth enough for 4:2:0 chroma
    cls.scene = cv2.resize(blocks, (640, 480), interpolation=cv2.INTER_NEAREST)
    yield cls
    shutdown_picamera2()
    sys.modules.pop("picamera2", None)


def picam(**kw: object) -> Picamera2Source:
    source = make_source(SourceConfig(uri="picamera2", **kw))
    assert isinstance(source, Picamera2Source)
    return source


def test_picamera2_lores_yuv420_with_stride_padding_becomes_bgr(fake_picamera2: type) -> None:
    source = picam(picamera2={"use_lores": True, "lores_width": 200, "lores_height": 150})
    source.open()
    frame = source.read()
    source.close()
    scene = cv2.resize(fake_picamera2.scene, (200, 150), interpolation=cv2.INTER_AREA)
    assert frame.shape == (150, 200, 3) and frame.dtype == np.uint8
    # Exactly the I420 round trip of the scene: the 56 padding bytes per row are gone.
    i420 = cv2.cvtColor(scene, cv2.COLOR_BGR2YUV_I420)
    assert np.array_equal(frame, cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420))
    # And in BGR order, close to the scene itself (only chroma subsampling differs).
    assert np.abs(frame.astype(int) - scene).mean() < 12
    assert np.abs(frame[:, :, ::-1].astype(int) - scene).mean() > 30


def test_picamera2_main_rgb888_is_bgr(fake_picamera2: type) -> None:
    source = picam(width=320, height=240, picamera2={"use_lores": False})
    source.open()
    frame = source.read()
    source.close()
    expected = cv2.resize(fake_picamera2.scene, (320, 240), interpolation=cv2.INTER_AREA)
    assert np.array_equal(frame, expected)


def test_picamera2_object_is_created_once_and_requests_released(fake_picamera2: type) -> None:
    source = picam()
    for _ in range(3):
        source.open()
        for _ in range(4):
            source.read()
        source.close()
    other = picam(picamera2={"use_lores": False})
    other.open()
    other.read()
    other.close()
    assert fake_picamera2.instances == 1
    assert fake_picamera2.requests == 13 and fake_picamera2.open_requests == 0
    with pytest.raises(SourceError, match="not open"):
        source.read()
    import edgecam.sources.picamera2_source as module

    camera = module._camera
    assert camera is not None and not camera.started
    shutdown_picamera2()
    assert camera.closed and module._camera is None


def test_picamera2_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    shutdown_picamera2()
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        picam().open()


def test_picamera2_lores_larger_than_main_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must not be larger than the main stream 320x240"):
        picam(width=320, height=240, picamera2={"lores_width": 640, "lores_height": 480})


@pytest.mark.parametrize("url, shown", [
    ("rtsp://admin:s3cr3t@cam.lan:554/stream1", "rtsp://admin:***@cam.lan:554/stream1"),
    ("rtsp://TOKEN123@cam", "rtsp://***@cam"),
    ("http://cam/snap.cgi?user=admin&pwd=s3cr3t", "http://cam/snap.cgi?user=***&pwd=***"),
    ("http://cam/video.mjpg?resolution=640x480&Token=abc&fps=10", "http://cam/video.mjpg?resolution=640x480&Token=***&fps=10"),
    ("http://cam:8080/video.mjpg", "http://cam:8080/video.mjpg"),
])
def test_credentials_never_reach_logs_or_payloads(url: str, shown: str) -> None:
    from edgecam.sources.opencv_source import redact_url

    assert redact_url(url) == shown
    source = OpenCVSource(SourceConfig(uri=url))
    assert source.source_id == shown and source.describe() == f"stream {shown}"
    assert all(secret not in source.source_id for secret in ("s3cr3t", "TOKEN123", "abc"))
