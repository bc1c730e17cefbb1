"""Helpers shared by the benchmark scripts: a process's own peak RSS, spreads over repeats, the host line."""

from __future__ import annotations

import os
import platform
import resource
import threading
from typing import Iterable

import numpy as np

from edgecam.model import cpu


def peak_rss_mb() -> float:
    """This process's own peak resident set size (VmHWM) in MiB.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux, a process started with fork/vfork +
    exec keeps its parent's high-water mark across the exec (the kernel folds the old address
    space's peak into the process's maxrss), so every child of a benchmark that had built the
    models with torch (1.4 GB) reported 1.4 GB. VmHWM belongs to the address space exec made.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # not Linux: no exec inheritance


def spread(values: Iterable[float]) -> tuple[float, float, float]:
    """(min, median, max); NaN for no values."""
    data = np.asarray([v for v in values if v == v], dtype=np.float64)
    if data.size == 0:
        return (float("nan"),) * 3
    return float(data.min()), float(np.median(data)), float(data.max())


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def fmt_spread(values: Iterable[float], digits: int = 2, suffix: str = "") -> str:
    """'median (min-max)', or just the value when there is one run."""
    values = list(values)
    low, mid, high = spread(values)
    if len(values) <= 1 or low != low:
        return fmt(mid, digits) + (suffix if mid == mid else "")
    return f"{fmt(mid, digits)}{suffix} ({fmt(low, digits)}-{fmt(high, digits)}{suffix})"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def simd_level() -> str:
    """The widest SIMD the CPU reports (what onnxruntime's kernels pick: VNNI matters for INT8)."""
    return cpu.simd_level()


def int8_kernels() -> str:
    """Which INT8 kernels the benchmark's sessions use on this host (edgecam/model/cpu.py)."""
    kernels = cpu.auto()
    return "exact INT8 sums (session.x64quantprecision)" if kernels.exact else "default INT8 kernels (exact here)"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def host_line(load_before: str) -> str:
    """What ran the benchmark and how busy it was (load averages 1/5/15 min, as `uptime` prints)."""
    return (f"host: {cpu_name()}, {simd_level()}, {int8_kernels()}, {os.cpu_count()} CPUs; "
            f"load average {load_before} before, "
            f"{load()} after")


# ---- per-thread CPU accounting (Linux schedstat) -------------------------------------------------

NATIVE = "native pools"  # threads Python did not start: onnxruntime's intra-op pool, OpenCV's pool


def thread_times() -> dict[int, tuple[str, float, float]]:
    """{tid: (group, ms on a CPU, ms runnable but waiting for a CPU)} for this process's threads.

    From /proc/self/task/*/schedstat (nanoseconds, exact, unlike utime's 10 ms ticks). Python
    threads are named by their threading name; every other thread counts as NATIVE.
    """
    names = {t.native_id: t.name for t in threading.enumerate()}
    times = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as stat:
                run_ns, wait_ns, _ = stat.read().split()
        except (OSError, ValueError):
            continue  # the thread ended, or no schedstat on this kernel
        times[int(tid)] = (names.get(int(tid), NATIVE), int(run_ns) / 1e6, int(wait_ns) / 1e6)
    return times


def per_frame_by_group(before: dict, after: dict, frames: int) -> dict[str, list[float]]:
    """{group: [CPU ms per frame, run-queue wait ms per frame]} between two thread_times()."""
    groups: dict[str, list[float]] = {}
    for tid, (group, run, wait) in after.items():
        _, run0, wait0 = before.get(tid, (group, 0.0, 0.0))
        totals = groups.setdefault(_group(group), [0.0, 0.0])
        totals[0] += (run - run0) / max(frames, 1)
        totals[1] += (wait - wait0) / max(frames, 1)
    return groups


def _group(name: str) -> str:
    """Thread names as the report shows them: paho's and the benchmark's own threads folded."""
    if name.startswith("paho-mqtt"):
        return "paho"
    if name.startswith("capture-"):  # one capture thread per camera: capture-<source id>
        return "capture"
    if name == "MainThread" or name.startswith("Thread-"):
        return "main/bench"
    return name
