"""Which INT8 kernels onnxruntime should use on this CPU, and why.

onnxruntime's INT8 convolutions on x86 multiply unsigned activations by signed
weights (U8S8). With VNNI (AVX-512 VNNI, AVX-VNNI) or AMX the products are summed
in 32 bits, exactly as on ARM. Without it (AVX2, or AVX-512 without VNNI) the
kernels sum pairs of products in 16 bits with saturation (``vpmaddubsw``), and a
model's answers drift: measured on an AVX2-only EPYC, EfficientNet-Lite0 INT8 agrees
with FP32 on 85% of held-out views, against 95% with exact sums (docs/model.md).

``session.x64quantprecision=1`` makes onnxruntime use kernels that sum exactly on
every x86 SIMD level, for about +30% time. edgecam turns it on where it is needed
(``model.exact_int8: auto``), so every CPU gives the answers a Pi gives.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

ExactInt8Mode = Literal["auto", "on", "off"]

# The session option (onnxruntime >= 1.16; ignored where it does not apply, e.g. on ARM).
EXACT_INT8_OPTION = "session.x64quantprecision"

_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}
_EXACT_X86_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
_SIMD_NAMES = (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX2 + AVX-VNNI"),
               ("avx512f", "AVX-512 (no VNNI)"), ("avx2", "AVX2 (no VNNI)"), ("asimddp", "NEON + dot product"),
               ("asimd", "NEON"))


@dataclass(frozen=True)
class Int8Kernels:
    """The choice for this process: ``exact`` sets :data:`EXACT_INT8_OPTION` on INT8 sessions."""

    exact: bool
    mode: ExactInt8Mode
    simd: str
    reason: str

    def as_dict(self) -> dict:
        return {"exact": self.exact, "mode": self.mode, "simd": self.simd, "reason": self.reason}

    def describe(self) -> str:
        kernels = "exact (session.x64quantprecision)" if self.exact else "onnxruntime's default"
        return f"INT8 kernels: {kernels}; {self.reason} (model.exact_int8: {self.mode})"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (x86 'flags', ARM 'Features'); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def simd_level(flags: Iterable[str] | None = None) -> str:
    """The widest SIMD the CPU reports, named for what matters to INT8 (VNNI or not)."""
    have = cpu_flags() if flags is None else frozenset(flags)
    if not have:
        return "unknown SIMD"
    return next((name for flag, name in _SIMD_NAMES if flag in have), "no AVX2")


def saturates(machine: str, flags: Iterable[str]) -> bool:
    """True where onnxruntime's default INT8 kernels sum in 16 bits: x86 without VNNI or AMX.

    An x86 CPU whose flags cannot be read counts as saturating: exact sums are the safe side.
    """
    if machine.lower() not in _X86:
        return False
    have = frozenset(flags)
    return not any(flag in have for flag in _EXACT_X86_FLAGS)


def choose(mode: ExactInt8Mode = "auto", machine: str | None = None,
           flags: Iterable[str] | None = None) -> Int8Kernels:
    """The kernels for ``mode`` on this CPU (or on ``machine``/``flags``, for tests and reports)."""
    machine = platform.machine() if machine is None else machine
    have = cpu_flags() if flags is None else frozenset(flags)
    simd = simd_level(have)
    needed = saturates(machine, have)
    if mode == "on":
        return Int8Kernels(True, mode, simd, f"set to on ({simd})")
    if mode == "off":
        why = "default kernels saturate 16-bit sums here" if needed else "default kernels are exact here"
        return Int8Kernels(False, mode, simd, f"set to off ({simd}: {why})")
    if needed:
        return Int8Kernels(True, mode, simd, f"{simd}: the default kernels would saturate 16-bit sums")
    where = "ARM" if machine.lower() not in _X86 else simd
    return Int8Kernels(False, mode, simd, f"{where}: the default kernels are exact")


_AUTO: Int8Kernels | None = None


def auto() -> Int8Kernels:
    """``choose("auto")`` for this host, read once (the CPU does not change while we run)."""
    global _AUTO
    if _AUTO is None:
        _AUTO = choose("auto")
    return _AUTO


def saturates_here() -> bool:
    """True where onnxruntime's default INT8 kernels saturate on this host."""
    return saturates(platform.machine(), cpu_flags())
