"""Password files: read with one helper for the web preview and MQTT, with a
warning (once per file) when group or others can read them (issue 11, point 7)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edgecam.config import HttpAuthConfig, HttpPreviewConfig, parse_config
from edgecam.errors import ConfigError
from edgecam.preview.hub import PreviewHub
from edgecam.publish.mqtt import read_password
from edgecam.secrets import read_secret_file
from edgecam.web import HttpPreview
from tests.support.web_control import ControlDouble


def _secret(tmp_path: Path, name: str, mode: int, text: str = "s3cret\n") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_private_file_is_read_without_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    path = _secret(tmp_path, "private.pass", 0o600, "pass word\r\n")
    assert read_secret_file(str(path), "x.password_file") == "pass word"
    assert _warnings(caplog) == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_file_others_can_read_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int) -> None:
    caplog.set_level(logging.WARNING)
    path = _secret(tmp_path, f"open-{mode:o}.pass", mode)
    for _ in range(3):
        assert read_secret_file(str(path), "preview.http.auth.password_file") == "s3cret"
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert f"mode 0{mode:o}" in warnings[0] and str(path) in warnings[0] and "chmod 600" in warnings[0]
    assert warnings[0].startswith("preview.http.auth.password_file: ")
    assert "s3cret" not in warnings[0]


def test_errors_name_the_key_and_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^mqtt.password_file: cannot read /nonexistent/x: No such file"):
        read_secret_file("/nonexistent/x", "mqtt.password_file")
    binary = tmp_path / "binary.pass"
    binary.write_bytes(b"\xff\xfe\x00")
    binary.chmod(0o600)
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_secret_file(str(binary), "mqtt.password_file")
    huge = _secret(tmp_path, "huge.pass", 0o600, "x" * 100_000)
    with pytest.raises(ConfigError, match="larger than 65536 bytes"):
        read_secret_file(str(huge), "mqtt.password_file")


def test_both_password_files_go_through_the_helper(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    preview_pass = _secret(tmp_path, "preview.pass", 0o644)
    mqtt_pass = _secret(tmp_path, "mqtt.pass", 0o644)
    preview = HttpPreview(HttpPreviewConfig(auth=HttpAuthConfig(username="v", password_file=str(preview_pass))),
                          PreviewHub(5), ControlDouble())
    assert preview.credentials == (b"v", b"s3cret")
    config = parse_config({"mqtt": {"username": "u", "password_file": str(mqtt_pass)}})
    assert read_password(config.mqtt) == "s3cret"
    warnings = _warnings(caplog)
    assert [w.split(":")[0] for w in warnings] == ["preview.http.auth.password_file", "mqtt.password_file"]
