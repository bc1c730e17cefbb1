"""Writing a change into the user's config file, keeping their comments and key order.

The web app's region editor and model deploys change config.yaml. The file is
read with ruamel.yaml's round-trip mode, so comments, key order and quoting
survive; only the keys named change. The result is validated as a whole (the
same loader as start-up) before anything is written, then written atomically:
a temp file in the same folder, fsynced, renamed over the original, with the
previous file kept as ``<name>.bak``. A file that would not validate is never
written, and the error names the key path and the file.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from ruamel.yaml import YAML

from edgecam.config.cameras import DEFAULT_CAMERA
from edgecam.config.loader import load_text, read_text
from edgecam.config.root import Config
from edgecam.errors import ConfigConflict, ConfigError

#: The value of an edit that removes the key.
DELETE = object()


def _yaml() -> "YAML":
    from ruamel.yaml import YAML  # only when a change is written: the daemon needs it rarely

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a user's long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(type(None), _represent_none)
    return yaml


def _represent_none(representer: Any, _data: None) -> Any:
    """``key: null`` stays ``key: null`` (ruamel writes an empty value by default)."""
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _node(value: Any) -> Any:
    """A plain value as ruamel nodes: short lists of scalars in flow style ([x1, y1, x2, y2])."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, Mapping):
        node = CommentedMap()
        for key, item in value.items():
            node[key] = _node(item)
        return node
    if isinstance(value, (list, tuple)):
        seq = CommentedSeq([_node(item) for item in value])
        if all(not isinstance(item, (Mapping, list, tuple)) for item in value):
            seq.fa.set_flow_style()
        return seq
    return value


class ConfigFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.realpath(path))  # a symlinked config is written where it lives
        self._read: Optional[str] = None  # the text render() started from (write() checks it is still there)

    @property
    def backup(self) -> Path:
        return self.path.with_name(self.path.name + ".bak")

    def render(self, edits: Mapping[str, Any]) -> tuple[str, Config]:
        """The file's text with ``edits`` (dotted key path -> value, or DELETE) applied, and
        the config it validates to. Raises ConfigError; writes nothing."""
        yaml = _yaml()
        original = read_text(self.path)
        self._read = original
        data = yaml.load(original)
        from ruamel.yaml.comments import CommentedMap

        if data is None:
            data = CommentedMap()
        if not isinstance(data, CommentedMap):
            raise ConfigError(f"{self.path}: top level must be a mapping")
        if any(dotted.startswith(f"cameras.{DEFAULT_CAMERA}.") for dotted in edits):
            _promote_single_source(data)
        for dotted, value in edits.items():
            _apply(data, dotted, value, self.path)
        out = io.StringIO()
        yaml.dump(data, out)
        text = out.getvalue()
        return text, load_text(text, self.path)

    def write(self, text: str) -> None:
        """Replace the file with ``text`` atomically; the old file becomes ``<name>.bak``.
        Refuses when someone else changed the file since ``render`` read it (their edit wins:
        the change is to be made again on top of it)."""
        if self._read is not None and self.path.exists() and read_text(self.path) != self._read:
            raise ConfigConflict(f"{self.path}: the file changed while this change was being made; "
                              "nothing was written, try again")
        folder = self.path.parent
        mode = self.path.stat().st_mode & 0o7777 if self.path.exists() else 0o644
        try:
            handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, prefix=f".{self.path.name}.",
                                                 suffix=".tmp", delete=False)
        except OSError as err:  # a read-only folder (a service without write access to /etc/edgecam)
            raise ConfigError(f"{self.path}: cannot write the config file: {err.strerror or err} (the daemon "
                              f"needs write access to {folder}: see docs/raspberry-pi.md)") from None
        try:
            with handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(handle.name, mode)
            if self.path.exists():
                shutil.copy2(self.path, self.backup)
            os.replace(handle.name, self.path)
            _fsync_folder(folder)
        except OSError as err:
            Path(handle.name).unlink(missing_ok=True)
            raise ConfigError(f"{self.path}: cannot write the config file: {err.strerror or err}") from None

    def edit(self, edits: Mapping[str, Any]) -> Config:
        """``render`` then ``write``: the config now in the file."""
        text, config = self.render(edits)
        self.write(text)
        return config

    def restore_backup(self) -> None:
        """Put the previous file back (a written change that could not be applied)."""
        if self.backup.exists():
            os.replace(self.backup, self.path)


def _promote_single_source(data: Any) -> None:
    """The one-camera layout (``source:``, or no camera at all) runs a camera named ``default``;
    an edit of that camera (the web page's region editor) moves ``source:`` under
    ``cameras.default`` first, comments and all. The running config is the same."""
    from ruamel.yaml.comments import CommentedMap

    if "cameras" in data:
        return
    source = data.get("source")
    if source is None:
        source = CommentedMap(uri="demo")  # what runs when the file names no source
    elif not isinstance(source, CommentedMap):
        return  # the validation that follows names what is wrong
    else:
        source.setdefault("uri", "demo")
    position = list(data).index("source") if "source" in data else len(data)
    data.pop("source", None)
    data.insert(position, "cameras", CommentedMap({DEFAULT_CAMERA: source}))


def _apply(data: Any, dotted: str, value: Any, file: Path) -> None:
    from ruamel.yaml.comments import CommentedMap

    *parents, leaf = dotted.split(".")
    node = data
    for depth, key in enumerate(parents):
        child = node.get(key)
        if child is None:
            if value is DELETE:
                return
            child = node[key] = CommentedMap()
        if not isinstance(child, CommentedMap):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"{file}: {where}: is not a mapping, cannot set {dotted}")
        node = child
    if value is DELETE:
        node.pop(leaf, None)
    else:
        node[leaf] = _node(value)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a power cut right after must not bring the old file back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
