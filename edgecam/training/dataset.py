"""An ImageFolder dataset: ``DATASET/<label>/*.jpg``, or ``DATASET/train/`` + ``DATASET/val/``.

A folder named ``inbox`` (unlabelled samples collected by the daemon) and hidden
folders are ignored. Every file is read once while scanning: unreadable ones are
reported and left out, and their bytes feed the dataset fingerprint that the
model's metadata carries (same files, same fingerprint).

Files are read under the web app's limits (``edgecam.images``): a file over
``max_bytes`` is not read, one whose header declares more than ``max_pixels`` is not
decoded, a format whose header edgecam does not parse is not decoded either; each is
left out with one log line saying why. Large JPEGs are decoded at 1/2, 1/4 or 1/8
size by libjpeg while their short side stays >= DECODE_MIN_SIDE, twice what the
largest input size (320) resizes to, so the model's input is unchanged in practice.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecam.errors import ModelBuildError
from edgecam.export.calibration import IMAGE_EXTS
from edgecam.images.header import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    ImageRejected,
    read_image_file,
)

log = logging.getLogger(__name__)

IGNORED_FOLDERS = ("inbox",)
DECODE_MIN_SIDE = 736  # 2 x int(320 / 0.875): the short side the largest --size resizes to, twice


@dataclass(frozen=True)
class ReadLimits:
    """What a dataset file may be: the web app's upload limits by default."""

    max_pixels: int = MAX_IMAGE_PIXELS
    max_bytes: int = MAX_IMAGE_BYTES

    def read(self, path: Path) -> tuple[np.ndarray | None, bytes, str]:
        """(BGR image, bytes, "") or (None, b"", why it was left out)."""
        try:
            image, data = read_image_file(path, self.max_pixels, self.max_bytes, DECODE_MIN_SIDE,
                                          "--max-image-pixels", "--max-image-bytes")
        except ImageRejected as err:
            return None, b"", str(err)
        except OSError as err:
            return None, b"", f"cannot read it ({err.strerror or err})"
        return image, data, ""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class Dataset:
    """Labels, the train/validation split, and what the metadata says about them."""

    root: Path
    labels: tuple[str, ...]
    train: list[Sample]
    val: list[Sample]
    split: str  # how the validation set was chosen, in words
    fingerprint: str  # "sha256:<16 hex>" over labels, names and bytes of every used file
    skipped: list[str] = field(default_factory=list)  # files left out (relative paths)
    limits: ReadLimits = field(default_factory=ReadLimits)
    why: dict[str, str] = field(default_factory=dict)  # relative path -> why it was left out

    def read(self, sample: Sample) -> np.ndarray:
        """The sample's image, read under the same limits as while scanning."""
        image, _, why = self.limits.read(sample.path)
        if image is None:
            raise ModelBuildError(f"{sample.path} became unusable during training: {why}")
        return image

    def counts(self, samples: list[Sample]) -> dict[str, int]:
        found = Counter(sample.label for sample in samples)
        return {label: found.get(i, 0) for i, label in enumerate(self.labels)}

    def totals(self) -> dict[str, int]:
        return self.counts(self.train + self.val)

    def summary(self) -> dict:
        """The ``dataset`` object of the model metadata."""
        train, val = self.counts(self.train), self.counts(self.val)
        return {
            "name": self.root.name,
            "fingerprint": self.fingerprint,
            "images": len(self.train) + len(self.val),
            "split": self.split,
            "classes": {label: {"train": train[label], "val": val[label]} for label in self.labels},
            "skipped_unreadable": len(self.skipped),
        }


def read_image(path: Path, limits: ReadLimits | None = None) -> np.ndarray | None:
    """BGR uint8 (grey files become 3-channel), or None when it is left out (see ReadLimits)."""
    image, _, _ = (limits or ReadLimits()).read(path)
    return image


def _class_folders(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_FOLDERS
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


class _Scanner:
    """Reads every file once: keeps the readable ones and hashes them for the fingerprint."""

    def __init__(self, root: Path, limits: ReadLimits) -> None:
        self.root = root
        self.limits = limits
        self.hash = hashlib.sha256()
        self.skipped: list[str] = []
        self.why: dict[str, str] = {}

    def samples(self, folder: Path, label_index: int, label: str) -> list[Sample]:
        found = []
        for path in _image_files(folder):
            image, data, why = self.limits.read(path)
            rel = path.relative_to(self.root).as_posix()
            if image is None:
                log.warning("dataset: leaving out %s: %s", rel, why)
                self.skipped.append(rel)
                self.why[rel] = why
                continue
            del image  # only its bytes are kept (hashed): one decoded image in memory at a time
            self.hash.update(f"{label}\0{rel}\0{len(data)}\0".encode())
            self.hash.update(hashlib.sha256(data).digest())
            found.append(Sample(path, label_index))
        return found

    def fingerprint(self) -> str:
        return "sha256:" + self.hash.hexdigest()[:16]


def load_dataset(root: str | Path, val_fraction: float = 0.2, seed: int = 0,
                 limits: ReadLimits | None = None) -> Dataset:
    """Scan ``root`` and split it (stratified), or use its ``train/`` and ``val/`` folders."""
    root = Path(root)
    limits = limits or ReadLimits()
    if not root.is_dir():
        raise ModelBuildError(f"dataset {root}: no such folder (expected DATASET/<label>/*.jpg)")
    if not 0.0 < val_fraction < 1.0:
        raise ModelBuildError(f"--val-fraction {val_fraction}: must be between 0 and 1")
    if (root / "train").is_dir() and (root / "val").is_dir():
        return _from_folders(root, limits)
    return _split(root, val_fraction, seed, limits)


def _labels_of(folder: Path, root: Path) -> list[str]:
    labels = [p.name for p in _class_folders(folder)]
    if len(labels) < 2:
        raise ModelBuildError(
            f"dataset {folder}: found {len(labels)} class folder(s) {labels}, need at least 2 "
            f"(one folder per label, e.g. {root}/open/ and {root}/closed/; 'inbox' is ignored)"
        )
    return labels


def _split(root: Path, val_fraction: float, seed: int, limits: ReadLimits) -> Dataset:
    labels = _labels_of(root, root)
    scanner = _Scanner(root, limits)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for index, label in enumerate(labels):
        samples = scanner.samples(root / label, index, label)
        if len(samples) < 2:
            raise ModelBuildError(
                f"dataset {root}: class {label!r} has {len(samples)} usable image(s); "
                "need at least 2 (one to train on, one to validate), better 20 or more"
            )
        order = rng.permutation(len(samples))
        n_val = min(len(samples) - 1, max(1, round(val_fraction * len(samples))))
        val += [samples[i] for i in order[:n_val]]
        train += [samples[i] for i in order[n_val:]]
    split = f"stratified {val_fraction:.0%} of each class held out for validation (seed {seed})"
    return Dataset(root, tuple(labels), train, val, split, scanner.fingerprint(), scanner.skipped, limits,
                   scanner.why)


def _from_folders(root: Path, limits: ReadLimits) -> Dataset:
    labels = _labels_of(root / "train", root)
    val_labels = [p.name for p in _class_folders(root / "val")]
    unknown = sorted(set(val_labels) - set(labels))
    if unknown:
        raise ModelBuildError(
            f"dataset {root}: val/ has classes that train/ lacks: {', '.join(unknown)}"
        )
    scanner = _Scanner(root, limits)
    train, val = [], []
    for index, label in enumerate(labels):
        train += scanner.samples(root / "train" / label, index, label)
        if (root / "val" / label).is_dir():
            val += scanner.samples(root / "val" / label, index, label)
    dataset = Dataset(root, tuple(labels), train, val, "the train/ and val/ folders",
                      scanner.fingerprint(), scanner.skipped, limits, scanner.why)
    for label, count in dataset.counts(train).items():
        if count == 0:
            raise ModelBuildError(f"dataset {root}: class {label!r} has no usable images in train/")
    missing = [label for label, count in dataset.counts(val).items() if count == 0]
    if missing:
        log.warning("dataset: no validation images for %s: their recall cannot be measured",
                    ", ".join(missing))
    if not val:
        raise ModelBuildError(f"dataset {root}: val/ holds no usable images")
    return dataset


def stratified_subset(samples: list[Sample], fraction: float, seed: int) -> list[int]:
    """Indices of about ``fraction`` of each class (at least one per class), seeded."""
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[int]] = {}
    for i, sample in enumerate(samples):
        by_label.setdefault(sample.label, []).append(i)
    chosen = []
    for indices in by_label.values():
        keep = max(1, math.ceil(fraction * len(indices)))
        chosen += [indices[i] for i in rng.permutation(len(indices))[:keep]]
    return sorted(chosen)
