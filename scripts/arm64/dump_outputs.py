"""Run edgecam models on fixed input tensors and save the raw outputs.

Runs on the host and inside the arm64 root, so it imports only what the
runtime venv has (numpy, onnxruntime, cv2 for its version) plus the stdlib.

    dump_outputs.py --inputs DIR --out DIR MODEL.onnx [MODEL.onnx ...]

Reads ``DIR/<model stem>/NN.npy`` (written by host_prep.py), writes
``OUT/<model stem>/NN.npy`` (the first output, as float32) and
``OUT/summary.json``: versions, machine, the emulated CPU seen in
/proc/cpuinfo, and the median ms per inference for each model. With
``--photos DIR`` it also saves ``OUT/crops/<photo>.npy``: the uint8 crops
edgecam's own Preprocessor makes (decode + resize + crop), to compare the
image pipeline across platforms.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def versions() -> dict:
    """What runs here: the interpreter, the runtime libraries, the CPU the kernel/qemu reports."""
    import cv2  # the daemon's image library: loading it is part of the proof
    import pydantic

    found = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "pydantic": pydantic.VERSION,
        "providers": ort.get_available_providers(),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        cpuinfo = []
    for key in ("CPU part", "Model", "model name"):
        values = [line.split(":", 1)[1].strip() for line in cpuinfo if line.split(":")[0].strip() == key]
        if values:
            found[key.replace(" ", "_").lower()] = values[0]
    found["cores_in_cpuinfo"] = sum(1 for line in cpuinfo if line.startswith("processor"))
    return found


def open_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def dump_model(path: Path, inputs_dir: Path, out_dir: Path, threads: int, repeat: int) -> dict:
    session = open_session(path, threads)
    name = session.get_inputs()[0].name
    files = sorted((inputs_dir / path.stem).glob("*.npy"))
    if not files:
        raise SystemExit(f"dump_outputs: no input tensors in {inputs_dir / path.stem}")
    target = out_dir / path.stem
    target.mkdir(parents=True, exist_ok=True)
    top1, times = [], []
    for file in files:
        tensor = np.load(file)
        output = np.asarray(session.run(None, {name: tensor})[0], dtype=np.float32)
        np.save(target / file.name, output)
        top1.append(int(output.ravel().argmax()))
        for _ in range(repeat):
            start = time.perf_counter()
            session.run(None, {name: tensor})
            times.append((time.perf_counter() - start) * 1000.0)
    return {"inputs": [f.name for f in files], "top1": top1,
            "ms_per_inference": round(statistics.median(times), 2) if times else None}


def dump_crops(model: Path, photos: Path, out_dir: Path) -> int:
    """The runtime's decode + resize + crop of each photo (edgecam is installed in both venvs)."""
    import cv2

    from edgecam.model.metadata import info_from_props
    from edgecam.model.preprocess import Preprocessor

    session = open_session(model, 1)
    pre = Preprocessor(info_from_props(session.get_modelmeta().custom_metadata_map, model.name))
    (out_dir / "crops").mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in photos.iterdir() if p.is_file())
    for photo in files:
        np.save(out_dir / "crops" / f"{photo.name}.npy", pre.crop(cv2.imread(str(photo), cv2.IMREAD_COLOR)))
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per input (after the first)")
    parser.add_argument("--photos", type=Path, help="also save the Preprocessor's crops of these photos")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"versions": versions(), "models": {}}
    for model in args.models:
        summary["models"][model.stem] = dump_model(model, args.inputs, args.out, args.threads, args.repeat)
    if args.photos:
        summary["crops"] = dump_crops(args.models[0], args.photos, args.out)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    json.dump(summary["versions"], sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
