"""Host side of the arm64 check: the photos, fixed input tensors and clip it runs on.

Runs in the HOST venv (scikit-image, OpenCV, the edgecam package):

    host_prep.py --work DIR MODEL.onnx [MODEL.onnx ...]

writes into DIR (which lies inside the arm64 root, so both sides read the same files):

* ``photos/``: scikit-image's real photos, copied unchanged (for ``edgecam classify``);
* ``inputs/<model stem>/NN.npy``: per model, two seeded random tensors (each side
  preprocesses the photos itself: dump_outputs.py --photos);
* ``clip.avi``: a short MJPG clip panning over the photos (for ``edgecam run``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from edgecam.bench.media import moving_frames, write_video
from edgecam.model.metadata import info_from_props
from edgecam.model.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[3]

PHOTO_FILES = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")
SEED = 20240606


def copy_photos(target: Path) -> list[Path]:
    import skimage

    data = Path(skimage.__file__).resolve().parent / "data"
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in PHOTO_FILES:
        if not (data / name).is_file():
            raise SystemExit(f"host_prep: scikit-image photo {data / name} is missing")
        copied.append(Path(shutil.copy2(data / name, target / name)))
    return copied


def write_inputs(model: Path, target: Path) -> int:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    info = info_from_props(session.get_modelmeta().custom_metadata_map, model.name)
    pre = Preprocessor(info)
    folder = target / model.stem
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    shape = pre.input_shape
    tensors = []
    for _ in range(2):
        if session.get_inputs()[0].type == "tensor(uint8)":
            tensors.append(rng.integers(0, 256, size=shape, dtype=np.uint8))
        else:
            tensors.append(rng.standard_normal(shape).astype(np.float32))
    for i, tensor in enumerate(tensors):
        np.save(folder / f"{i:02d}.npy", np.ascontiguousarray(tensor))
    return len(tensors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    copy_photos(args.work / "photos")
    for model in args.models:
        count = write_inputs(model, args.work / "inputs")
        print(f"host_prep: {count} input tensors for {model.name}")
    write_video(args.work / "clip.avi", moving_frames(90), fps=15.0)
    os.chmod(args.work / "clip.avi", 0o644)
    return 0


if __name__ == "__main__":
    sys.exit(main())
