"""Exact INT8 on every CPU: which kernels edgecam picks, and that they give a Pi's answers.

The choice is a pure function of the machine and its CPU flags, so every SIMD level is
checked here whatever this host is; the last tests run real models on this host.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecam.bench.media import photo_bgr
from edgecam.config.loader import load_text
from edgecam.errors import ConfigError
from edgecam.model import cpu
from edgecam.model.classifier import Classifier

AVX2 = {"sse4_2", "avx", "avx2", "fma"}
SKYLAKE_X = AVX2 | {"avx512f", "avx512bw"}
CASCADE_LAKE = SKYLAKE_X | {"avx512_vnni"}
ALDER_LAKE = AVX2 | {"avx_vnni"}
SAPPHIRE_RAPIDS = CASCADE_LAKE | {"amx_tile", "amx_int8"}
PI5 = {"fp", "asimd", "asimddp"}


@pytest.mark.parametrize("machine, flags, exact, simd", [
    ("x86_64", AVX2, True, "AVX2 (no VNNI)"),
    ("x86_64", SKYLAKE_X, True, "AVX-512 (no VNNI)"),
    ("x86_64", CASCADE_LAKE, False, "AVX-512 VNNI"),
    ("x86_64", ALDER_LAKE, False, "AVX2 + AVX-VNNI"),
    ("x86_64", SAPPHIRE_RAPIDS, False, "AMX"),
    ("x86_64", set(), True, "unknown SIMD"),  # flags unreadable: the safe side
    ("aarch64", PI5, False, "NEON + dot product"),
    ("aarch64", {"fp", "asimd"}, False, "NEON"),
])
def test_auto_makes_sums_exact_exactly_where_the_default_kernels_saturate(machine: str, flags: set, exact: bool,
                                                                         simd: str) -> None:
    kernels = cpu.choose("auto", machine, flags)
    assert (kernels.exact, kernels.simd, kernels.mode) == (exact, simd, "auto")
    assert ("saturate" in kernels.reason) == exact


def test_on_and_off_force_the_choice_and_say_what_the_cpu_would_need() -> None:
    on = cpu.choose("on", "x86_64", CASCADE_LAKE)
    off = cpu.choose("off", "x86_64", AVX2)
    assert on.exact and on.reason == "set to on (AVX-512 VNNI)"
    assert not off.exact and "saturate" in off.reason
    assert off.as_dict() == {"exact": False, "mode": "off", "simd": "AVX2 (no VNNI)", "reason": off.reason}


@pytest.mark.parametrize("written, read", [("auto", "auto"), ("on", "on"), ("off", "off"), ('"on"', "on"),
                                           ("yes", "on"), ("false", "off")])
def test_the_config_key_reads_auto_on_off_as_a_user_writes_them(written: str, read: str) -> None:
    # YAML 1.1 reads a bare on/off/yes/false as a boolean: those mean on/off here too.
    assert load_text(f"model:\n  exact_int8: {written}\n", Path("c.yaml")).model.exact_int8 == read


def test_a_wrong_value_names_the_key_and_the_file() -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml.*model\.exact_int8"):
        load_text("model:\n  exact_int8: sometimes\n", Path("c.yaml"))


def test_a_classifier_follows_this_hosts_choice_unless_told(effnet_models) -> None:
    assert Classifier(effnet_models.int8, threads=1).exact_int8 == cpu.auto().exact
    assert Classifier(effnet_models.int8, threads=1, exact_int8=True).exact_int8 is True


def test_exact_kernels_give_the_same_answers_on_every_host(effnet_models) -> None:
    """Where the host's choice is the exact path (x86 without VNNI) it is that path, bit for bit;
    where the default kernels are already exact (VNNI, AMX, ARM), forcing the exact path changes
    no answer: the same top-1 on every crop, probabilities within a rounding step or two (the
    two kernels requantize in their own order, as the arm64 check's tolerances show)."""
    crops = [photo_bgr(name) for name in ("chelsea", "coffee", "astronaut", "rocket")]  # clear winners
    forced = Classifier(effnet_models.int8, threads=1, exact_int8=True).probabilities_batch(crops)
    chosen = Classifier(effnet_models.int8, threads=1).probabilities_batch(crops)
    if cpu.auto().exact:
        assert np.array_equal(forced, chosen)
    else:
        assert (forced.argmax(axis=1) == chosen.argmax(axis=1)).all()
        assert float(np.abs(forced - chosen).max()) < 0.05
