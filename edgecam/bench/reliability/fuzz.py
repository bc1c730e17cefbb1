"""The reliability harness's fuzzers (hypothesis): HTTP requests, MQTT commands, config files.

Each ``fuzz_*`` function runs ``examples`` generated inputs against the real thing and returns a
``FuzzOutcome``: how many ran, and the first few that broke the invariant, with what went wrong.
The invariants are what a user may rely on whatever arrives:

* HTTP: every request gets an HTTP answer within the request deadline plus slack, never a 500
  and never a connection reset before the answer, and the server still answers /health after.
* Commands: the daemon answers a ``status`` probe after every payload (a retained one included:
  it is ignored, not run) and logs no traceback.
* Config files: ``load_config`` returns a Config or raises one ConfigError that names the file,
  within a second, never another exception.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecam.config import load_config
from edgecam.errors import ConfigError

# Statuses a hostile request may get. 500 is a bug; so is no answer at all.
ALLOWED_STATUSES = {200, 400, 401, 403, 404, 405, 408, 411, 413, 415, 431, 501, 503, 505}


@dataclass
class FuzzOutcome:
    name: str
    examples: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, message: str) -> None:
        if len(self.failures) < 5:
            self.failures.append(message[:300])


class TargetDied(Exception):
    """The process under test is gone: stop fuzzing it."""


def _run(outcome: FuzzOutcome, strategy: st.SearchStrategy, examples: int, check: Callable[[Any], None],
         alive: Callable[[], bool] = lambda: True, fixed: bool = False) -> None:
    """Run ``check`` on ``examples`` draws; a raised AssertionError is a failure (recorded, not
    shrunk: the harness reports, the unit tests pin down). Stops once ``alive()`` is false.
    ``fixed``: the same examples every run (CI's gate must not depend on luck); otherwise new ones."""

    @settings(max_examples=examples, deadline=None, database=None, derandomize=fixed,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def each(value: Any) -> None:
        if not alive():
            raise TargetDied
        outcome.examples += 1
        try:
            check(value)
        except AssertionError as err:
            outcome.fail(f"{err} <- {value!r:.150}")
        if not alive():
            outcome.fail(f"the daemon died <- {value!r:.150}")
            raise TargetDied

    started = time.monotonic()
    try:
        each()
    except TargetDied:
        pass
    outcome.seconds = time.monotonic() - started


# ----------------------------------------------------------------------------------------- HTTP

_TOKEN = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                 min_size=1, max_size=20)
_VALUE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=200)


def _bodies(samples: dict[str, bytes]) -> st.SearchStrategy[bytes]:
    real = list(samples.values())
    return st.one_of(
        st.binary(max_size=2048),
        st.sampled_from(real),
        st.tuples(st.sampled_from(real), st.floats(0, 1)).map(lambda t: t[0][:int(len(t[0]) * t[1])]),  # truncated
        st.tuples(st.sampled_from(real), st.integers(0, 4095), st.binary(min_size=1, max_size=8)).map(
            lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):]),  # bytes flipped in the header
    )


def http_requests(samples: dict[str, bytes]) -> st.SearchStrategy[bytes]:
    """Whole raw requests: methods, paths, content types, declared lengths, headers and bodies."""
    method = st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "HEAD", "OPTIONS"]) | _TOKEN
    path = st.sampled_from(["/classify", "/classify", "/api/latest", "/health", "/metrics", "/api/samples",
                            "/api/capture", "/latest.jpg", "/", "/%00", "/" + "a" * 5000]) | \
        st.text(max_size=40).map(lambda t: "/" + t.replace(" ", "%20").replace("\r", "").replace("\n", ""))
    content_type = st.sampled_from(["image/jpeg", "image/png", "text/plain", "application/json",
                                    "multipart/form-data; boundary=x", "multipart/form-data",
                                    "image/jpeg; a=b"]) | _VALUE
    length = st.sampled_from(["actual", "actual", "none", "huge", "negative", "junk", "short", "twice"])
    extra = st.lists(st.tuples(_TOKEN, _VALUE), max_size=4) | st.just([("X-Big", "x" * 70_000)])
    version = st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/1.1", "HTTP/2.0", "HTTP/0.9", "JUNK"])
    return st.builds(_request, method, path, content_type, length, extra, version, _bodies(samples))


def _request(method: str, path: str, content_type: str, length: str, extra: list[tuple[str, str]],
             version: str, body: bytes) -> bytes:
    declared = {"actual": str(len(body)), "huge": str(10**15), "negative": "-5", "junk": "12abc",
                "short": str(len(body) + 100), "twice": f"{len(body)}\r\nContent-Length: {len(body) + 1}",
                "none": None}[length]
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    if declared is not None:
        lines.append(f"Content-Length: {declared}")
    lines += [f"{name}: {value}" for name, value in extra]
    return "\r\n".join(lines).encode("latin-1", "replace") + b"\r\n\r\n" + body


def send_raw(port: int, request: bytes, timeout_s: float) -> tuple[Optional[int], str]:
    """Send, half-close, read the answer: (status or None, what happened)."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            try:
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may answer and stop reading first: read what it said
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
                if len(answer) > 16:
                    break
    except socket.timeout:
        return None, f"no answer within {timeout_s:g} s"
    except OSError as err:
        return None, f"{type(err).__name__} after {time.monotonic() - started:.2f} s"
    head = answer.split(b"\r\n", 1)[0].split()
    if len(head) < 2 or not head[0].startswith(b"HTTP/") or not head[1].isdigit():
        return None, f"not an HTTP answer: {answer[:40]!r}"
    return int(head[1]), ""


def fuzz_http(port: int, samples: dict[str, bytes], examples: int, timeout_s: float,
              alive: Callable[[], bool] = lambda: True, fixed: bool = False) -> FuzzOutcome:
    outcome = FuzzOutcome("HTTP requests")

    def check(request: bytes) -> None:
        status, problem = send_raw(port, request, timeout_s)
        assert status is not None, problem
        assert status in ALLOWED_STATUSES, f"HTTP {status}"

    _run(outcome, http_requests(samples), examples, check, alive, fixed)
    status, problem = send_raw(port, b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", timeout_s)
    if status not in (200, 503):
        outcome.fail(f"/health after the fuzz: {status or problem}")
    return outcome


# ------------------------------------------------------------------------------------- commands

_NUMBER = st.one_of(st.integers(), st.integers(min_value=10**300, max_value=10**400), st.floats(),
                    st.sampled_from([0, 1e-300, -1, 1e308, 0.1, 0.5, 30]))
_ANY = st.recursive(st.none() | st.booleans() | _NUMBER | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
_SETTING = st.sampled_from(["max_fps", "min_score", "policy", "smoothing", "change_delta", "heartbeat_s",
                            "interval_hz", "confirm", "top_k", "bogus", ""])


def commands() -> st.SearchStrategy[tuple[bytes, bool]]:
    """(payload, retain): command objects with hostile values, junk JSON, junk bytes."""
    command = st.fixed_dictionaries(
        {"cmd": st.sampled_from(["set", "set", "pause", "resume", "status", "snapshot", "reload", "capture"]) | _ANY},
        optional={"id": _ANY, "camera": st.sampled_from(["demo", "nope", "../x"]) | _ANY,
                  "region": st.sampled_from(["full", "centre", "x" * 300]) | _ANY})
    settings_ = st.dictionaries(_SETTING, _ANY | _NUMBER, max_size=3)
    objects = st.tuples(command, settings_).map(lambda t: json.dumps({**t[1], **t[0]}).encode())
    junk = st.binary(max_size=300) | _ANY.map(lambda v: json.dumps(v).encode()) | \
        st.just(b"{" * 5000) | st.just(b"[" * 100_000)
    return st.tuples(objects | junk, st.sampled_from([False, False, False, True]))


def fuzz_commands(publish: Callable[[bytes, bool], None], probe: Callable[[], Optional[float]],
                  examples: int, alive: Callable[[], bool] = lambda: True, fixed: bool = False) -> FuzzOutcome:
    """``publish(payload, retain)`` sends one; ``probe()`` sends a status command and returns
    the seconds its reply took, or None when none came."""
    outcome = FuzzOutcome("MQTT commands")

    def check(value: tuple[bytes, bool]) -> None:
        publish(*value)
        assert probe() is not None, "no reply to a status probe after it"

    _run(outcome, commands(), examples, check, alive, fixed)
    return outcome


# -------------------------------------------------------------------------------------- configs

_VALID = {
    "log_level": "INFO", "device_id": "fuzz",
    "source": {"uri": "demo", "fps": 30, "backoff": {"initial_s": 0.5, "max_s": 30}},
    "cameras": {"yard": {"uri": "demo", "regions": {"door": {"box": [0.1, 0.2, 0.5, 0.9], "confirm": 3}}}},
    "model": {"path": "models/resnet18_160_int8.onnx", "threads": 2, "top_k": 3},
    "inference": {"max_fps": 0, "smoothing": 1},
    "publish": {"policy": "every", "min_score": 0.0},
    "mqtt": {"host": "localhost", "port": 1883, "qos": 0, "tls": {"enabled": False}},
    "preview": {"http": {"enabled": True, "port": 8080, "allowed_hosts": ["cam.local"]}},
}


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += _paths(value, prefix + (key,))
    return out


def _mutate(path: tuple, value: Any) -> dict:
    config = json.loads(json.dumps(_VALID))
    if not path:
        return value
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


def config_texts() -> st.SearchStrategy[str]:
    """YAML texts: the valid config with one value (or key) replaced, and text-level damage."""
    value = _ANY | _NUMBER | st.text(max_size=2000) | st.sampled_from([".nan", ".inf", "-.inf", "0x10", "1e999"])
    mutated = st.tuples(st.sampled_from(_paths(_VALID)), value).map(lambda t: _mutate(*t))
    unknown_key = st.tuples(st.sampled_from(_paths(_VALID)), st.text(min_size=1, max_size=12), _ANY).map(
        lambda t: _mutate(t[0] + (t[1],), t[2]) if t[0] and isinstance(_lookup(t[0]), dict) else _VALID)
    documents = (mutated | unknown_key).map(lambda d: yaml.safe_dump(d, allow_unicode=True))
    damaged = st.tuples(documents, st.integers(0, 2000), st.text(max_size=30)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:])
    hostile = st.sampled_from(["[" * 5000, "{a: " * 3000, "a: &a [x]\n" + "".join(
        f"b{i}: &b{i} [" + ", ".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * 9) + "]\n" for i in range(9)),
        "source: !!python/object/apply:os.system ['true']", "%YAML 9.9\n---\na: 1", "--- 1\n--- 2",
        "model: {threads: " + "9" * 5000 + "}", "log_level: INFO\nlog_level: DEBUG"])
    return documents | damaged | st.text(max_size=300) | hostile


def _lookup(path: tuple) -> Any:
    node: Any = _VALID
    for key in path:
        node = node[key]
    return node


def fuzz_configs(workdir: Path, examples: int, max_seconds: float = 1.0, fixed: bool = False) -> FuzzOutcome:
    outcome = FuzzOutcome("config files")
    path = workdir / "fuzzed.yaml"

    def check(text: str) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        started = time.monotonic()
        try:
            load_config(path)
        except ConfigError as err:
            assert str(err).startswith(f"{path}:"), f"ConfigError without the file name: {err}"
        except Exception as err:  # noqa: BLE001 - exactly what the fuzzer looks for
            raise AssertionError(f"{type(err).__name__}: {err}") from None
        took = time.monotonic() - started
        assert took < max_seconds, f"took {took:.2f} s"

    _run(outcome, config_texts(), examples, check, fixed=fixed)
    return outcome
