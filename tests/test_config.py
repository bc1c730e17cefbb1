"""Configuration: the shipped config.yaml, and a table of bad configs with exact messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from edgecam.config import Config, apply_overrides, load_config, parse_config
from edgecam.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

BAD_CONFIGS = [
    ("mqtt:\n  prot: 1883\n", "mqtt.prot: unknown key"),
    ("colour: red\n", "colour: unknown key"),
    ("mqtt:\n  port: 70000\n", "mqtt.port: Input should be less than or equal to 65535 (got 70000)"),
    ("mqtt:\n  port: eighty\n", "mqtt.port: Input should be a valid integer"),
    ("mqtt:\n  qos: 3\n", "mqtt.qos: Input should be 0, 1 or 2"),
    ("mqtt:\n  protocol: '4'\n", "mqtt.protocol: Input should be '3.1.1' or '5'"),
    ("mqtt:\n  password_env: PW\n", "mqtt: password_file/password_env need a username"),
    ("mqtt:\n  tls:\n    cert_file: a.pem\n", "mqtt.tls: cert_file and key_file must be given together"),
    ("mqtt:\n  topic_prefix: 'a/#'\n", "mqtt.topic_prefix: topic_prefix must be non-empty"),
    ("model:\n  threads: 0\n", "model.threads: Input should be greater than or equal to 1 (got 0)"),
    ("model:\n  top_k: many\n", "model.top_k: Input should be a valid integer"),
    ("source:\n  fourcc: MJ\n", "source.fourcc: fourcc must be exactly 4 characters"),
    ("source:\n  type: webcam\n", "source.type: Input should be 'auto', 'demo', 'opencv' or 'picamera2'"),
    ("source:\n  backoff:\n    initial_s: 5\n    max_s: 1\n", "source.backoff: max_s must be >= initial_s"),
    ("source:\n  uri: '  '\n", "source.uri: uri must not be empty"),
    ("inference:\n  smoothing: 0\n", "inference.smoothing: Input should be greater than or equal to 1"),
    ("inference:\n  max_fps: -2\n", "inference.max_fps: Input should be greater than or equal to 0"),
    ("publish:\n  policy: sometimes\n", "publish.policy: Input should be 'every', 'on_change' or 'interval'"),
    ("publish:\n  min_score: 1.5\n", "publish.min_score: Input should be less than or equal to 1"),
    ("buffer:\n  capacity: 1\n", "buffer.capacity: Input should be greater than or equal to 2"),
    ("device_id: 'a/b'\n", "device_id: device_id must be non-empty, without '/'"),
    ("log_level: LOUD\n", "log_level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ("preview:\n  http:\n    port: -1\n", "preview.http.port: Input should be greater than or equal to 0"),
    ("- just\n- a list\n", "top level must be a mapping, got list"),
    ("mqtt: [unclosed\n", "invalid YAML (line 2, column 1)"),
]


def run_edgecam(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecam", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_shipped_config_is_valid_and_documents_every_key() -> None:
    config = load_config(REPO / "config.yaml")
    assert config.model_dump(exclude={"device_id"}) == Config().model_dump(exclude={"device_id"})
    text = (REPO / "config.yaml").read_text()
    missing = [key for key in leaf_keys(Config) if f"{key}:" not in text]
    assert not missing, f"config.yaml does not document {missing}"


def leaf_keys(model: type, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        value_type = typing.get_args(annotation)[-1] if typing.get_origin(annotation) is dict else None
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            keys += leaf_keys(annotation, f"{prefix}{name}.")
        elif isinstance(value_type, type) and hasattr(value_type, "model_fields"):  # cameras, regions
            keys.append(name)
            keys += [key for key in leaf_keys(value_type, f"{prefix}{name}.NAME.") if key not in keys]
        else:
            keys.append(name)
    return keys


@pytest.mark.parametrize(("text", "fragment"), BAD_CONFIGS, ids=[f[1][:40] for f in BAD_CONFIGS])
def test_bad_config_names_key_and_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message


@pytest.mark.parametrize("index", [0, 2, 12, 23])
def test_check_config_cli_exit_code_2(tmp_path: Path, index: int) -> None:
    text, fragment = BAD_CONFIGS[index]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = run_edgecam("check-config", str(path))
    assert proc.returncode == 2
    assert fragment in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_run_with_bad_config_exits_2_before_loading_anything(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("mqtt:\n  prot: 1\n")
    proc = run_edgecam("run", "--config", str(path))
    assert proc.returncode == 2 and "mqtt.prot: unknown key" in proc.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    proc = run_edgecam("check-config", str(tmp_path / "absent.yaml"))
    assert proc.returncode == 2 and "config file not found" in proc.stderr


def test_check_config_ok(tmp_path: Path, resnet_int8: Path) -> None:
    (tmp_path / "models").mkdir()
    shutil.copy(resnet_int8, tmp_path / "models" / "resnet18_160_int8.onnx")  # what the shipped config names
    proc = run_edgecam("check-config", str(REPO / "config.yaml"), cwd=tmp_path)
    assert proc.returncode == 0 and ": OK: device" in proc.stdout, proc.stdout + proc.stderr
    assert "camera default: demo clip" in proc.stdout and "region full: box [0.0, 0.0, 1.0, 1.0]" in proc.stdout


def test_command_line_overrides_are_validated_too() -> None:
    config = load_config(None)
    assert apply_overrides(config, {"mqtt.port": 1884}).mqtt.port == 1884
    with pytest.raises(ConfigError, match=r"command line: mqtt.port: Input should be less than or equal to 65535"):
        apply_overrides(config, {"mqtt.port": 99999})
    proc = run_edgecam("run", "--mqtt-port", "99999", cwd=REPO)
    assert proc.returncode == 2 and "mqtt.port" in proc.stderr


def test_a_device_index_written_as_a_bare_number_is_taken_as_one() -> None:
    """``uri: 0`` is what the docs show for USB camera 0; YAML reads it as an int."""
    assert parse_config({"source": {"uri": 0}}).source.uri == "0"
    assert parse_config({"cameras": {"usb": {"uri": 1}}}).cameras["usb"].uri == "1"
    with pytest.raises(ConfigError, match=r"source\.uri"):
        parse_config({"source": {"uri": True}})
