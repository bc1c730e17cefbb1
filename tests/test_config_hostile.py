"""Config files a user (or an attacker with write access to /etc/edgecam) can get wrong on purpose.

Every one must end in one ConfigError naming the file, quickly and in bounded memory: never a
traceback (RecursionError, ValueError), never a read of an endless file. Found by the reliability
harness's config fuzzer (edgecam/bench/reliability/run.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from edgecam.config import load_config
from edgecam.config.loader import MAX_CONFIG_BYTES
from edgecam.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def _alias_bomb(levels: int = 9) -> str:
    """The YAML 'billion laughs': each anchor lists the previous one 9 times (9**9 leaves)."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nsource: {{uri: demo, fps: *l{levels - 1}}}\n"


HOSTILE = {
    "nested lists": ("source: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    "nested mappings": ("source: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested"),
    "a 5000-digit integer": ("model: {threads: " + "9" * 5000 + "}\n", "5000 digits"),
    "an alias bomb": (_alias_bomb(), "alias"),
    "a key given twice": ("log_level: INFO\nmodel: {threads: 2}\nlog_level: DEBUG\n", "log_level"),
    "a 30 MB device id": ("device_id: " + "a" * 30_000_000 + "\n", "larger than"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_file_is_one_config_error_naming_file_and_cause(tmp_path: Path, name: str) -> None:
    text, cause = HOSTILE[name]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ConfigError) as err:
            load_config(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert message.startswith(f"{path}:"), message
    assert cause in message, message
    assert len(message) < 600, message
    assert time.monotonic() - started < 3.0
    assert peak < 8 * MAX_CONFIG_BYTES + 20_000_000, peak


def test_an_endless_file_is_refused_without_reading_it_all() -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"^/dev/zero: .*not a regular file"):
        load_config("/dev/zero")
    assert time.monotonic() - started < 1.0


def test_a_file_just_under_the_size_limit_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    padding = "#" * (MAX_CONFIG_BYTES - 200) + "\n"
    path.write_text(padding + "log_level: DEBUG\nmqtt: {enabled: false}\n")
    assert path.stat().st_size < MAX_CONFIG_BYTES
    assert load_config(path).log_level == "DEBUG"


def test_merge_keys_still_work(tmp_path: Path) -> None:
    """YAML merge keys (``<<: *base``) are a real feature users share cameras with; keep them."""
    path = tmp_path / "config.yaml"
    path.write_text("cameras:\n  a: &cam {uri: demo, fps: 5}\n  b: {<<: *cam, fps: 7}\n")
    config = load_config(path)
    assert (config.cameras["a"].fps, config.cameras["b"].fps, config.cameras["b"].uri) == (5, 7, "demo")


def test_check_config_cli_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(HOSTILE["nested lists"][0])
    done = subprocess.run([sys.executable, "-m", "edgecam", "check-config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"edgecam: error: {path}:")
