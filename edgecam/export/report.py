"""Build-time checks: FP32-vs-INT8 agreement on held-out images, speed, the printed report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecam.export.calibration import Named
from edgecam.model.classifier import Classifier

log = logging.getLogger(__name__)


def agreement(fp32: Classifier, int8: Classifier, images: list[Named]) -> dict:
    """Top-1 agreement and top-5 containment of INT8 vs FP32 on ``images``.

    top1: share of images where both give the same best class;
    top5: share where the FP32 best class is within the INT8 top 5.
    """
    same, within = 0, 0
    for _, image in images:
        ref = int(np.argmax(fp32.probabilities(image)))
        probs = int8.probabilities(image)
        top5 = np.argsort(probs)[::-1][:5]
        same += int(int(top5[0]) == ref)
        within += int(ref in top5)
    count = len(images)
    return {
        "images": count,
        "top1": round(same / count, 4) if count else None,
        "top5": round(within / count, 4) if count else None,
    }


def time_ms(clf: Classifier, frame: np.ndarray, runs: int) -> float:
    """Median ms for one frame -> probabilities (preprocessing included)."""
    clf.probabilities(frame)
    samples = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        clf.probabilities(frame)
        samples.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(samples))


@dataclass
class BuildReport:
    """What ``edgecam model build`` did (printed at the end)."""

    fp32_path: Path
    int8_path: Path
    size: int
    layout: str
    threads: int
    agreement: dict = field(default_factory=dict)  # with exact INT8 sums, as on a Pi
    fp32_ms: float | None = None
    int8_ms: float | None = None
    skipped: bool = False  # outputs were already up to date
    note: str = ""
    simd: str = ""
    # Where this host's default INT8 kernels saturate (x86 without VNNI): what they would give.
    saturating_agreement: dict = field(default_factory=dict)
    saturating_ms: float | None = None

    def format(self) -> str:
        lines = []
        if self.skipped:
            lines.append("models are up to date (same build options; --force rebuilds):")
        for path in (self.fp32_path, self.int8_path):
            size_mb = path.stat().st_size / 1e6 if path.exists() else float("nan")
            lines.append(f"  {path}  {size_mb:.1f} MB")
        if self.fp32_ms is not None and self.int8_ms is not None:
            speedup = self.fp32_ms / self.int8_ms if self.int8_ms else float("nan")
            lines.append(
                f"  speed at {self.size}x{self.size}, {self.threads} threads, frame->probabilities: "
                f"FP32 {self.fp32_ms:.2f} ms, INT8 {self.int8_ms:.2f} ms ({speedup:.1f}x)"
            )
        if self.agreement.get("images"):
            lines.extend(self._agreement_table())
        if self.note:
            lines.append(f"  {self.note}")
        return "\n".join(lines)

    def _agreement_table(self) -> list[str]:
        host = f" on this host ({self.simd})" if self.simd else ""
        exact = ("exact sums (as on a Pi; what edgecam runs here)" if self.saturating_agreement
                 else "this host's kernels (exact sums, as on a Pi)")
        rows = [(exact, self.agreement, self.int8_ms)]
        if self.saturating_agreement:
            rows.append(("this host's default kernels (16-bit saturating sums)", self.saturating_agreement,
                         self.saturating_ms))
        lines = [f"  INT8 vs FP32 on {self.agreement['images']} held-out images{host}:",
                 "  | INT8 kernels | top-1 agreement | top-5 containment | ms per frame |",
                 "  |---|---|---|---|"]
        for name, agree, ms in rows:
            lines.append(f"  | {name} | {agree['top1']:.1%} | {agree['top5']:.1%} | "
                         f"{'-' if ms is None else f'{ms:.2f}'} |")
        fp32_ms = "-" if self.fp32_ms is None else f"{self.fp32_ms:.2f}"
        lines.append(f"  | FP32 (the reference) | 100% | 100% | {fp32_ms} |")
        return lines
