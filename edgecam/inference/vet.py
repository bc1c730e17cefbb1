"""A model file is checked in a process of its own before the daemon runs it.

A model can be hostile or just too big for a Pi: a declared 20000x20000 input
(MemoryError at the first run), gigabytes allocated when it runs, minutes for a
first run, NaN on real frames. So before any new model file runs (upload,
reload, start-up) a child process (``python -m edgecam.inference.vet``) loads it
and runs it on real crops of the regions that will use it, while this process
watches it: it is killed past ``model.checks.max_load_s`` or when it grows by more
than ``max_memory_mb``. The file passes when every output is finite, of the
expected shape, and no image took longer than ``max_run_ms``; only then does the
daemon load it itself. Verdicts are remembered by the file's SHA-256 (in the
cache directory), so a restart re-checks neither a good file nor a known-bad one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edgecam.config import ModelChecksConfig

log = logging.getLogger(__name__)

_POLL_S = 0.05
_CACHE_VERSION = 1


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    load_s: float = 0.0
    run_ms: float = 0.0  # the slowest image
    grew_mb: float = 0.0  # peak resident memory the check added to a bare process


def stand_in_frames() -> list[np.ndarray]:
    """Frames for a check before any camera delivered one (start-up): a lit gradient with
    sensor-like noise, and a flat grey; fixed seed, so a verdict can be remembered."""
    rng = np.random.default_rng(20261203)
    y, x = np.mgrid[0:480, 0:640]
    gradient = np.stack([x * 255 // 639, y * 255 // 479, (x + y) * 255 // 1118], axis=-1).astype(np.int16)
    noisy = np.clip(gradient + rng.normal(0, 12, gradient.shape), 0, 255).astype(np.uint8)
    return [noisy, np.full((480, 640, 3), 128, np.uint8)]


def cache_path(environ: Optional[dict[str, str]] = None) -> Path:
    """``$CACHE_DIRECTORY`` (systemd's CacheDirectory=), else the XDG cache directory."""
    env = os.environ if environ is None else environ
    if env.get("CACHE_DIRECTORY"):
        return Path(env["CACHE_DIRECTORY"].split(":")[0]) / "models-checked.json"
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "edgecam" / "models-checked.json"


class ModelChecker:
    """Runs the checks; remembers verdicts of files checked without real crops (start-up)."""

    def __init__(self, checks: ModelChecksConfig, threads: int, exact_int8: bool = False,
                 cache: Optional[Path] = None) -> None:
        self.checks = checks
        self.threads = threads
        self.exact_int8 = exact_int8
        self._cache_file = cache if cache is not None else cache_path()
        self._cache_lock = threading.Lock()  # guards the cache file (change worker vs start-up)

    def check(self, path: str, crops: Sequence[np.ndarray], remember: bool = False) -> Verdict:
        """The verdict on ``path`` run on ``crops``. ``remember``: reuse and keep the verdict
        for this file and these limits (start-up, where no live crops exist yet)."""
        key = _cache_key(path, self.checks, self.exact_int8) if remember else None
        if key is not None:
            known = self._cached(key)
            if known is not None:
                return known
        verdict = run_check(path, crops, self.checks, self.threads, self.exact_int8)
        if key is not None:
            self._remember(key, verdict)
        return verdict

    def _cached(self, key: str) -> Optional[Verdict]:
        with self._cache_lock:
            entry = _read_cache(self._cache_file).get(key)
        return Verdict(**entry) if isinstance(entry, dict) else None

    def _remember(self, key: str, verdict: Verdict) -> None:
        with self._cache_lock:
            data = _read_cache(self._cache_file)
            data[key] = asdict(verdict)
            try:
                self._cache_file.parent.mkdir(parents=True, exist_ok=True)
                staged = self._cache_file.with_suffix(".tmp")
                staged.write_text(json.dumps(data))
                staged.replace(self._cache_file)
            except OSError as err:
                log.debug("model checks: cannot keep the verdict in %s: %s", self._cache_file, err)


def _cache_key(path: str, checks: ModelChecksConfig, exact_int8: bool) -> Optional[str]:
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None
    return f"v{_CACHE_VERSION}:{digest}:{checks.model_dump_json()}:exact={int(exact_int8)}"


def _read_cache(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_check(path: str, crops: Sequence[np.ndarray], checks: ModelChecksConfig, threads: int,
              exact_int8: bool = False) -> Verdict:
    """Check ``path`` in a child process on ``crops``, killing it past the limits."""
    with tempfile.TemporaryDirectory(prefix="edgecam-check-") as folder:
        crops_file = Path(folder) / "crops.npz"
        np.savez(crops_file, *[np.ascontiguousarray(crop) for crop in crops])
        command = [sys.executable, "-m", "edgecam.inference.vet", path, str(crops_file), str(threads),
                   str(checks.max_input_size), str(int(exact_int8)), str(checks.max_run_ms)]
        started = time.monotonic()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        reason = _watch(child, checks, started)
        out = child.stdout.read() if child.stdout is not None else ""
        child.wait()
    if reason is not None:
        return Verdict(False, reason, load_s=time.monotonic() - started)
    try:
        report = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Verdict(False, f"the check process ended with code {child.returncode} and no report")
    if not report.get("ok"):
        return Verdict(False, str(report.get("reason", "failed")), report.get("load_s", 0.0))
    verdict = Verdict(True, "", report["load_s"], report["run_ms"], report["grew_mb"])
    if verdict.grew_mb > checks.max_memory_mb:
        return Verdict(False, f"it took {verdict.grew_mb:.0f} MB, more than model.checks.max_memory_mb "
                              f"({checks.max_memory_mb})", verdict.load_s, verdict.run_ms, verdict.grew_mb)
    if verdict.run_ms > checks.max_run_ms:
        return Verdict(False, f"an image took {verdict.run_ms:.0f} ms, more than model.checks.max_run_ms "
                              f"({checks.max_run_ms:g})", verdict.load_s, verdict.run_ms, verdict.grew_mb)
    return verdict


def _watch(child: "subprocess.Popen[str]", checks: ModelChecksConfig, started: float) -> Optional[str]:
    """Wait for the child; kill it and say why when it passes a limit."""
    limit_mb = checks.max_memory_mb + _BARE_MB
    while child.poll() is None:
        rss = _rss_mb(child.pid)
        if rss is not None and rss > limit_mb:
            child.kill()
            return f"it took more than model.checks.max_memory_mb ({checks.max_memory_mb} MB)"
        if time.monotonic() - started > checks.max_load_s:
            child.kill()
            return f"loading and running it took longer than model.checks.max_load_s ({checks.max_load_s:g} s)"
        time.sleep(_POLL_S)
    return None


#: What the check process itself takes (Python, numpy, OpenCV, onnxruntime) beyond its first sample.
_BARE_MB = 150.0


def _rss_mb(pid: int) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def _child(argv: list[str]) -> dict[str, Any]:
    """In the check process: load, run each crop, report."""
    from edgecam.errors import ModelError
    from edgecam.model.classifier import Classifier

    path, crops_file, threads, max_input_size = argv[0], argv[1], int(argv[2]), int(argv[3])
    exact_int8 = argv[4:5] == ["1"]
    max_run_ms = float(argv[5]) if len(argv) > 5 else float("inf")
    bare = _rss_mb(os.getpid()) or 0.0
    started = time.monotonic()
    try:
        classifier = Classifier(path, threads=threads, max_input_size=max_input_size, exact_int8=exact_int8)
        with np.load(crops_file) as stored:
            crops = [stored[name] for name in stored.files]
        slowest = 0.0
        for crop in crops:
            t0 = time.perf_counter()
            probabilities = classifier.probabilities_batch([crop])
            slowest = max(slowest, (time.perf_counter() - t0) * 1000.0)
            if probabilities.shape != (1, classifier.info.num_classes):
                raise ModelError(f"outputs have shape {probabilities.shape}, "
                                 f"expected (1, {classifier.info.num_classes})")
            if not np.isfinite(probabilities).all():
                raise ModelError("its outputs on a real frame are not finite numbers (NaN or infinity)")
            if slowest > max_run_ms:
                break  # the verdict is known: no need to sit through the other crops
    except ModelError as err:
        return {"ok": False, "reason": str(err), "load_s": time.monotonic() - started}
    except MemoryError:
        return {"ok": False, "reason": "it ran out of memory", "load_s": time.monotonic() - started}
    grew = (_rss_mb(os.getpid()) or bare) - bare
    return {"ok": True, "load_s": round(time.monotonic() - started, 3), "run_ms": round(slowest, 2),
            "grew_mb": round(grew, 1)}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1:])), flush=True)
