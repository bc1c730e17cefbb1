"""Which region a dataset belongs to, the model's default name, and who owns an existing model.

The daemon collects samples into ``<collect.dir>/<camera>/<region>/<label>/`` with an
``inbox/`` for unlabelled ones (edgecam.dataset.store). A dataset folder is taken to be
such a region folder when it has an ``inbox/`` folder or holds files named the way the
daemon names samples; its model is then named ``<camera>_<region>`` (two cameras'
``door`` regions no longer share ``door_int8.onnx``). Any other folder names the model
after itself, as before.

Every trained model records where it came from in its metadata (``dataset.camera``,
``dataset.region``, ``dataset.path``). Training refuses to replace a model trained on
another region (or on another folder, when no region is known), an ImageNet build, or
a file it cannot read, unless ``--force``: retraining the same region replaces its
model as it always did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgecam.errors import ModelBuildError

INBOX = "inbox"
# RegionStore._write names samples <UTC stamp>-<ms>_<reason>_<seq>.jpg (tests check both agree).
DAEMON_SAMPLE = re.compile(r"^\d{8}T\d{6}-\d{3}_[A-Za-z0-9_-]+_\d+\.jpg$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Origin:
    """Where a dataset comes from: a daemon region (camera, region) or just a folder."""

    path: str  # the dataset folder, resolved
    camera: str | None = None
    region: str | None = None

    @property
    def owner(self) -> str:
        """What a model trained on this dataset belongs to, in words."""
        if self.camera and self.region:
            return f"region {self.camera}/{self.region}"
        return f"the dataset folder {self.path}"

    def summary(self) -> dict:
        """The keys the model's ``dataset`` metadata carries."""
        found = {"path": self.path}
        if self.camera and self.region:
            found.update(camera=self.camera, region=self.region)
        return found

    @classmethod
    def from_summary(cls, dataset: dict) -> Origin | None:
        """The origin a model's ``dataset`` metadata records; None when it records none."""
        path = dataset.get("path")
        if not isinstance(path, str):
            return None
        camera, region = dataset.get("camera"), dataset.get("region")
        if isinstance(camera, str) and isinstance(region, str):
            return cls(path, camera, region)
        return cls(path)

    def same_owner(self, other: Origin) -> bool:
        if self.camera and self.region:
            return (other.camera, other.region) == (self.camera, self.region)
        return other.camera is None and other.path == self.path


def is_region_folder(root: Path) -> bool:
    """True when ``root`` looks like ``<collect.dir>/<camera>/<region>`` as the daemon fills it."""
    if (root / INBOX).is_dir():
        return True
    return any(
        folder.is_dir() and not folder.name.startswith(".")
        and any(DAEMON_SAMPLE.match(file.name) for file in folder.iterdir())
        for folder in root.iterdir()
    )


def origin_of(root: Path) -> Origin:
    root = root.resolve()
    if is_region_folder(root) and root.parent != root:
        return Origin(str(root), root.parent.name, root.name)
    return Origin(str(root))


def safe_name(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._-")


def default_name(origin: Origin) -> str:
    if origin.camera and origin.region:
        stem = safe_name(f"{origin.camera}_{origin.region}")
    else:
        stem = safe_name(Path(origin.path).name)
    return stem or "custom"


def output_files(out_dir: Path, name: str) -> list[Path]:
    return [out_dir / f"{name}_{suffix}" for suffix in ("int8.onnx", "fp32.onnx", "confusion.png", "report.txt")]


def check_owner(out_dir: Path, name: str, origin: Origin, force: bool) -> None:
    """ModelBuildError when OUT/<name>_*.onnx exist and belong to something else than ``origin``."""
    if force:
        return
    for path in output_files(out_dir, name)[:2]:
        if not path.exists():
            continue
        problem = _foreign(path, origin)
        if problem:
            raise ModelBuildError(
                f"{path} {problem}; training on {origin.owner} would replace it. Pass --name to write "
                f"another model (the default name here is {default_name(origin)!r}), or --force to replace it"
            )


def _foreign(path: Path, origin: Origin) -> str | None:
    """Why ``path`` is not ``origin``'s model to replace, or None when it is."""
    from edgecam.errors import ModelError
    from edgecam.export.metadata import read_props
    from edgecam.model.metadata import info_from_props

    props = read_props(path)
    if props is None:
        return "exists and is not a model edgecam can read"
    try:
        info = info_from_props(props, path.name)
    except ModelError:
        return "exists and is not an edgecam model"
    if not info.dataset:
        return "is not a model trained by `edgecam train` (it has no dataset: an ImageNet build?)"
    owner = Origin.from_summary(info.dataset)
    if owner is None:
        return (f"was trained on a dataset named {info.dataset.get('name', '?')!r} by an older edgecam, "
                "which did not record its region")
    if not origin.same_owner(owner):
        return f"belongs to {owner.owner}"
    return None
