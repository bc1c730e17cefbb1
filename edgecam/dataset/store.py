"""One region's samples on disk: ``DATASET/<camera>/<region>/<label>/*.jpg`` and ``inbox/``.

Plain folders (an ImageFolder), so a file manager works as well as the label
page, and ``edgecam train DATASET/<camera>/<region>`` reads them as they are.

Each source of samples has its own budget, so one never pushes the other out:

* automatic samples (the collector's: ``low-score``, ``state-change``,
  ``periodic``) still in ``inbox/``: at most ``max_files`` files and ``max_mb``.
  They go in only when new enough: a 64-bit difference hash (dHash, ~0.05 ms on
  a crop) is compared with every sample the region already has, and a crop within
  ``min_distance`` bits of one is not kept. At the cap, the automatic inbox
  sample with the closest neighbour makes room.
* captures (saved on request: the ``capture`` command, the web page; their file
  names say ``_capture_``), in any folder: at most ``max_captures`` files and
  ``max_mb``. At the cap a capture is refused with a clear error; it never evicts
  anything.
* samples the user labelled are the user's: never evicted, counted in neither.

Files are written to a temporary name and renamed, so a crash never leaves half a JPEG.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgecam.errors import EdgecamError

log = logging.getLogger(__name__)

INBOX = "inbox"
CAPTURE = "capture"  # the reason (in the file name) of samples saved on request
# \A ... \Z and fullmatch: "$" would also match before a trailing newline ("open\n").
LABEL_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
SAMPLE_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,95}\.jpg\Z")
# How _write names a sample: <UTC stamp>-<ms>_<reason>_<seq>.jpg
NAMED = re.compile(r"\A(\d{8}T\d{6})-(\d{3})_([A-Za-z0-9-]+)_\d+\.jpg\Z")
BURST = "burst"  # the reason of samples a burst capture kept (edgecam.dataset.collector)


class DatasetError(EdgecamError):
    """A sample could not be saved, moved or found (full disk, bad name, cap reached...).
    ``reason`` is what repeats the same way for every region (e.g. "Read-only file system")."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def check_label(label: str) -> str:
    if label == INBOX or not LABEL_PATTERN.fullmatch(label):
        raise DatasetError(f"label {label[:64]!r} must be 1-64 letters, digits, '_' or '-' (and not {INBOX!r})")
    return label


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash: sign of horizontal gradients on a 9x8 grey thumbnail."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@dataclass(frozen=True)
class Sample:
    label: str  # "inbox" for unlabelled
    name: str  # file name
    size: int  # bytes

    @property
    def id(self) -> str:
        return f"{self.label}/{self.name}"

    @property
    def reason(self) -> str:
        """Why it was collected (low-score, state-change, periodic, capture, burst), from its name."""
        found = NAMED.fullmatch(self.name)
        return found.group(3) if found else ""

    @property
    def time(self) -> str:
        """When it was saved, ISO 8601 UTC (``2026-12-03T13:44:31.123Z``), from its name; "" if unknown."""
        found = NAMED.fullmatch(self.name)
        if not found:
            return ""
        stamp, ms = found.group(1), found.group(2)
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}.{ms}Z"


def is_capture(sample: Sample) -> bool:
    """True for a sample saved on request (its file name carries the reason)."""
    return f"_{CAPTURE}_" in sample.name


class RegionStore:
    """The samples of one region. Thread-safe: the collector thread writes, the web
    page and MQTT commands list, move and delete."""

    def __init__(self, root: Path, max_files: int, max_mb: float, min_distance: int, jpeg_quality: int = 90,
                 max_captures: int = 200) -> None:
        self.root = root
        self.max_files = max_files
        self.max_bytes = int(max_mb * 2**20)
        self.max_captures = max_captures
        self.min_distance = min_distance
        self.jpeg_quality = jpeg_quality
        self._lock = threading.Lock()
        self._hashes: dict[str, int] | None = None  # sample id -> dHash, loaded on first use
        self._seq = 0

    # -- reading ------------------------------------------------------------------------
    def samples(self) -> list[Sample]:
        found: list[Sample] = []
        if not self.root.is_dir():
            return found
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if folder.name != INBOX and not LABEL_PATTERN.fullmatch(folder.name):
                continue
            for file in sorted(folder.glob("*.jpg")):
                if SAMPLE_PATTERN.fullmatch(file.name):
                    found.append(Sample(folder.name, file.name, file.stat().st_size))
        return found

    def path_of(self, sample_id: str) -> Path:
        label, _, name = sample_id.partition("/")
        if not ((label == INBOX or LABEL_PATTERN.fullmatch(label)) and SAMPLE_PATTERN.fullmatch(name)):
            raise DatasetError(f"no such sample {sample_id[:100]!r}")
        path = self.root / label / name
        if not path.is_file():
            raise DatasetError(f"no such sample {sample_id[:100]!r}")
        return path

    def usage(self) -> tuple[int, int]:
        samples = self.samples()
        return len(samples), sum(s.size for s in samples)

    # -- writing ------------------------------------------------------------------------
    def add(self, crop: np.ndarray, reason: str) -> Sample | None:
        """Save an automatic sample to the inbox. Returns it, or None when it is not new enough
        (or not newer than the automatic sample it would evict). Raises DatasetError when the
        disk refuses."""
        if reason == CAPTURE:
            raise ValueError("captures go through capture()")
        data, code = self._encode(crop)
        with self._lock:
            hashes = self._load_hashes()
            nearest = min((distance(code, h) for h in hashes.values()), default=64)
            if nearest < self.min_distance or not self._make_room(len(data), nearest):
                return None
            sample = self._write(INBOX, reason, data)
            hashes[sample.id] = code
        return sample

    def capture(self, crop: np.ndarray, label: str | None = None) -> Sample:
        """Save a sample on request (to ``label``, else the inbox), within the captures' own
        budget; never evicts. Raises DatasetError when that budget is spent or the disk refuses."""
        folder = INBOX if label is None else check_label(label)
        data, code = self._encode(crop)
        with self._lock:
            hashes = self._load_hashes()
            captures = [s for s in self.samples() if is_capture(s)]
            size = sum(s.size for s in captures)
            if len(captures) + 1 > self.max_captures or size + len(data) > self.max_bytes:
                raise DatasetError(
                    f"the region's captures are full ({len(captures)} files, {size / 2**20:.2f} MB; "
                    f"collect.max_captures {self.max_captures}, collect.max_mb {self.max_bytes / 2**20:g}): "
                    "delete some, or raise the limits. Automatic samples are not touched.", "captures full")
            sample = self._write(folder, CAPTURE, data)
            hashes[sample.id] = code
        return sample

    def move(self, sample_ids: list[str], label: str) -> int:
        """Label (or re-label) samples; ``label`` may be "inbox". Returns how many moved.
        All or nothing: one id that no longer exists (another tab deleted it) moves none."""
        target = INBOX if label == INBOX else check_label(label)
        with self._lock:
            hashes = self._load_hashes()
            sources = {sample_id: self.path_of(sample_id) for sample_id in sample_ids}
            (self.root / target).mkdir(parents=True, exist_ok=True)
            for sample_id, source in sources.items():
                os.replace(source, self.root / target / source.name)
                hashes[f"{target}/{source.name}"] = hashes.pop(sample_id, 0)
        return len(sources)

    def delete(self, sample_ids: list[str]) -> int:
        """Delete samples; all or nothing, as :meth:`move`."""
        with self._lock:
            hashes = self._load_hashes()
            paths = {sample_id: self.path_of(sample_id) for sample_id in sample_ids}
            for sample_id, path in paths.items():
                path.unlink()
                hashes.pop(sample_id, None)
        return len(paths)

    # -- internals (lock held) -------------------------------------------------------------
    def _load_hashes(self) -> dict[str, int]:
        if self._hashes is None:
            self._hashes = {}
            for sample in self.samples():
                image = cv2.imread(str(self.root / sample.label / sample.name), cv2.IMREAD_REDUCED_GRAYSCALE_4)
                if image is not None:
                    self._hashes[sample.id] = dhash(image)
        return self._hashes

    def _make_room(self, incoming: int, novelty: int) -> bool:
        """Evict the least new automatic inbox samples until ``incoming`` bytes fit in their
        budget. False when the new sample is not newer than what it would evict (not kept)."""
        auto = [s for s in self.samples() if s.label == INBOX and not is_capture(s)]
        count, size = len(auto), sum(s.size for s in auto)
        while count + 1 > self.max_files or size + incoming > self.max_bytes:
            victim = self._least_novel(auto)
            if victim is None:
                raise DatasetError(f"a sample of {incoming / 2**20:.2f} MB is larger than collect.max_mb "
                                   f"({self.max_bytes / 2**20:g})", "sample too large")
            if victim[1] >= novelty:
                return False
            sample = victim[0]
            (self.root / sample.label / sample.name).unlink(missing_ok=True)
            assert self._hashes is not None
            self._hashes.pop(sample.id, None)
            auto.remove(sample)
            count, size = count - 1, size - sample.size
        return True

    def _least_novel(self, inbox: list[Sample]) -> tuple[Sample, int] | None:
        """The sample of ``inbox`` whose nearest other sample is closest (most redundant)."""
        assert self._hashes is not None
        best: tuple[Sample, int] | None = None
        for sample in inbox:
            code = self._hashes.get(sample.id)
            if code is None:
                return sample, -1  # unreadable: goes first
            nearest = min((distance(code, h) for key, h in self._hashes.items() if key != sample.id), default=64)
            if best is None or nearest < best[1]:
                best = (sample, nearest)
        return best

    def _encode(self, crop: np.ndarray) -> tuple[bytes, int]:
        ok, buf = cv2.imencode(".jpg", crop, [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality])
        if not ok:
            raise DatasetError("could not encode the sample as JPEG")
        return buf.tobytes(), dhash(crop)

    def _write(self, folder: str, reason: str, data: bytes) -> Sample:
        directory = self.root / folder
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{stamp}-{int(time.time() * 1000) % 1000:03d}_{reason}_{self._seq}.jpg"
        temporary = directory / f".{name}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, directory / name)
        except OSError as err:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            why = err.strerror or str(err)
            raise DatasetError(f"cannot write samples to {directory}: {why}", why) from None
        return Sample(folder, name, len(data))
