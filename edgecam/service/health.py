"""Is the daemon doing its job? The watchdog's answer (liveness) and /health's.

Every loop stamps a Heartbeat each turn (capture per camera, inference,
publisher). ``liveness`` is what systemd's watchdog gets: every loop is making
progress, no call into a camera has hung past its deadline, the sinks can
write, and each connected, unpaused camera's frames get through inference.
A camera that is lost but retried with backoff is alive (a restart would not
bring it back); one whose open or read hangs in native code is not (only a
restart frees it). Paused means the inference loop is alive and idle.
``health`` (for /health and monitors) adds: every camera delivering frames,
every region's model working (a failing or disabled region is named), and a
first result.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from edgecam.inference.pipeline import Pipeline
from edgecam.inference.thread import InferenceThread
from edgecam.publish.publisher import PublisherThread

#: A loop whose heartbeat is older than this is wedged. With the watchdog armed the
#: limit is the ping period (half of WatchdogSec) when shorter, so a hang stops the
#: pings well before systemd's deadline.
STALL_S = 10.0
MIN_STALL_S = 0.2
PUBLISHER_SLACK_S = 1.0  # a sink's write deadline (stdout) inside one publisher turn


class Health:
    def __init__(self, pipeline: Pipeline, inference: InferenceThread, publisher: PublisherThread,
                 watchdog_period_s: Callable[[], Optional[float]] = lambda: None) -> None:
        self._pipeline = pipeline
        self._inference = inference
        self._publisher = publisher
        self._watchdog_period_s = watchdog_period_s

    def watchdog_stall_s(self) -> float:
        period = self._watchdog_period_s()
        return STALL_S if period is None else max(MIN_STALL_S, min(STALL_S, period))

    def liveness(self, stall_s: float = STALL_S) -> tuple[bool, str]:
        """(True, "ok"/"paused") while every loop makes progress; else (False, why)."""
        layout = self._pipeline.layout
        for name, run in layout.cameras.items():
            camera = run.camera
            limit = stall_s + camera.cfg.read_timeout_s
            if camera.capture.heartbeat.stale(limit):
                return False, f"camera {name}: capture loop stuck for {camera.capture.heartbeat.age():.0f} s"
            stuck = camera.source.stuck_for()
            if stuck > limit:
                return False, f"camera {name}: a call into {camera.source.source_id} has hung for {stuck:.0f} s"
        for heartbeat, limit in ((self._inference.heartbeat, stall_s),
                                 (self._publisher.heartbeat, stall_s + PUBLISHER_SLACK_S)):
            if heartbeat.stale(limit):
                return False, f"{heartbeat.name} loop stuck for {heartbeat.age():.0f} s"
        if not self._inference.alive:
            return False, "inference thread is not running"
        problems = self._publisher.problems()
        if problems:
            return False, "; ".join(problems)
        stuck_camera = self._camera_without_progress(stall_s)
        if stuck_camera:
            return False, stuck_camera
        return True, "paused" if layout.all_paused else "ok"

    def _camera_without_progress(self, stall_s: float) -> Optional[str]:
        """A connected camera whose frames have not got through inference for too long."""
        layout = self._pipeline.layout
        max_fps = layout.config.inference.max_fps
        allowed = stall_s + (1.0 / max_fps if max_fps > 0 else 0.0)
        now = time.monotonic()
        for name, run in layout.cameras.items():
            camera = run.camera
            if not camera.connected:
                continue
            stamps = [t for t in (self._inference.progress.get(name), camera.capture.connected_since_mono)
                      if t is not None]
            waited = now - max(stamps) if stamps else None
            if waited is not None and waited > allowed:
                return f"inference stuck: camera {name} got no result for {waited:.0f} s"
        return None

    def health(self) -> tuple[bool, str]:
        """/health: liveness, plus every camera delivering and a first result."""
        alive, reason = self.liveness(self.watchdog_stall_s())
        if not alive:
            return False, reason
        layout = self._pipeline.layout
        for name, run in layout.cameras.items():
            capture = run.camera.capture
            if not capture.connected:
                what = f"source {capture.state}: {capture.last_error or 'no frames yet'}"
                return False, what if layout.config.single_source else f"camera {name}: {what}"
        for key, error in layout.errors.items():
            return False, f"region {key} does not run: {error}"
        for region in layout.regions():
            if region.faults.failing is not None:
                return False, (f"region {region.camera}/{region.name}: its model failed on "
                               f"{region.faults.in_a_row} frame(s) in a row: {region.faults.failing}")
        if self._inference.last_result_mono is None and not layout.all_paused:
            return False, "no frame classified yet"
        return True, reason
