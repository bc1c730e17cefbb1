"""Run edgecam models on fixed inputs and on photos, and save the raw outputs.

Runs on the host and inside the arm64 root, so it imports only what the
runtime venv has (numpy, onnxruntime, cv2, pydantic, edgecam) plus the stdlib.

    dump_outputs.py --inputs DIR --out DIR [--photos DIR] [--fault KIND] MODEL.onnx [...]

Reads ``DIR/<model stem>/NN.npy`` (synthetic tensors written by host_prep.py) and
writes ``OUT/<model stem>/NN.npy`` (the first output, as float32). With
``--photos DIR`` each side also preprocesses the photos itself with edgecam's
Preprocessor (decode, resize, crop, colour order, mean/std) and saves
``OUT/crops/<photo>.npy`` (the uint8 crop of the first model),
``OUT/tensors/<model stem>/<photo>.npy`` (the input tensor) and the model's
output as ``OUT/<model stem>/photo-<photo>.npy``. ``OUT/summary.json`` holds
versions, the machine, the emulated CPU seen in /proc/cpuinfo and the median ms
per inference.

``--fault KIND`` breaks this side's preprocessing on purpose (see FAULTS), to
show that the check catches it. ``--exact-int8`` sets onnxruntime's
``session.x64quantprecision``: on x86 the U8S8 kernels without VNNI sum pairs of
products in saturating 16-bit (VPMADDUBSW); this option makes every x86 SIMD
level accumulate exactly, as ARM does (it is compiled out on ARM).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

# Preprocessing faults the arm side can inject (--fault), each a mistake a port could make.
FAULTS = {
    "bgr": "colour order swapped (RGB <-> BGR)",
    "mean": "the other common mean (ImageNet's <-> 0.5)",
    "std": "the other common std (ImageNet's <-> 0.5)",
    "stretch": "whole frame squashed to the input size (no resize + centre crop)",
    "linear": "the resize's last step in INTER_LINEAR, not INTER_LINEAR_EXACT (off by 1 LSB on ARM)",
}
IMAGENET_MEAN, IMAGENET_STD, HALF = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (0.5, 0.5, 0.5)


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


def open_session(path: Path, threads: int, exact_int8: bool = False, literal: bool = False) -> ort.InferenceSession:
    """A CPU session. ``literal``: no graph optimization, so QDQ runs as DequantizeLinear -> float op
    -> QuantizeLinear, the ONNX definition, instead of onnxruntime's fused integer kernels."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if exact_int8:
        options.add_session_config_entry("session.x64quantprecision", "1")
    if literal:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _other(values: tuple[float, ...], imagenet: tuple[float, ...]) -> tuple[float, ...]:
    return HALF if np.allclose(values, imagenet, atol=0.02) else imagenet


def make_preprocessor(session: ort.InferenceSession, name: str, fault: str | None = None):
    """edgecam's own Preprocessor for this model, broken as ``fault`` says (None: as shipped)."""
    from edgecam.model import preprocess
    from edgecam.model.metadata import info_from_props

    info = info_from_props(session.get_modelmeta().custom_metadata_map, name)
    if fault == "bgr":
        info = dataclasses.replace(info, color_order="BGR" if info.color_order == "RGB" else "RGB")
    elif fault == "mean":
        info = dataclasses.replace(info, mean=_other(info.mean, IMAGENET_MEAN))  # type: ignore[arg-type]
    elif fault == "std":
        info = dataclasses.replace(info, std=_other(info.std, IMAGENET_STD))  # type: ignore[arg-type]
    elif fault == "stretch":
        import cv2

        def squash(image: np.ndarray, size: int, interpolation: str = "") -> np.ndarray:
            return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)

        preprocess.resize_center_crop = squash  # this process only: it is a test harness
    elif fault == "linear":
        import cv2

        preprocess._CV2_FLAGS = {**preprocess._CV2_FLAGS, "area+linear": cv2.INTER_LINEAR}
    elif fault is not None:
        raise SystemExit(f"dump_outputs: unknown fault {fault!r}: choose from {', '.join(FAULTS)}")
    return preprocess.Preprocessor(info)


def load_photos(photos: Path | None) -> list[tuple[str, np.ndarray]]:
    if photos is None:
        return []
    import cv2

    photos_read = [(p.name, cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in sorted(photos.iterdir()) if p.is_file()]
    return [(name, image) for name, image in photos_read if image is not None]


def dump_model(path: Path, args: argparse.Namespace, photos: list[tuple[str, np.ndarray]]) -> dict:
    session = open_session(path, args.threads, exact_int8=args.exact_int8)
    name = session.get_inputs()[0].name
    files = sorted((args.inputs / path.stem).glob("*.npy"))
    if not files:
        raise SystemExit(f"dump_outputs: no input tensors in {args.inputs / path.stem}")
    feeds = [(f.name, np.load(f)) for f in files]
    if photos:
        pre = make_preprocessor(session, path.name, args.fault)
        tensors = args.out / "tensors" / path.stem
        tensors.mkdir(parents=True, exist_ok=True)
        for photo, image in photos:
            tensor = pre(image)
            np.save(tensors / f"{photo}.npy", tensor)
            feeds.append((f"photo-{photo}.npy", tensor))
    target = args.out / path.stem
    target.mkdir(parents=True, exist_ok=True)
    top1, times = [], []
    for file_name, tensor in feeds:
        output = np.asarray(session.run(None, {name: tensor})[0], dtype=np.float32)
        np.save(target / file_name, output)
        top1.append(int(output.ravel().argmax()))
        for _ in range(args.repeat):
            start = time.perf_counter()
            session.run(None, {name: tensor})
            times.append((time.perf_counter() - start) * 1000.0)
    return {"inputs": [f for f, _ in feeds], "top1": top1,
            "ms_per_inference": round(statistics.median(times), 2) if times else None}


def dump_crops(model: Path, photos: list[tuple[str, np.ndarray]], out_dir: Path, fault: str | None) -> int:
    """The decode + resize + crop of each photo (edgecam is installed in both venvs)."""
    pre = make_preprocessor(open_session(model, 1), model.name, fault)
    (out_dir / "crops").mkdir(parents=True, exist_ok=True)
    for photo, image in photos:
        np.save(out_dir / "crops" / f"{photo}.npy", pre.crop(image))
    return len(photos)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per input (after the first)")
    parser.add_argument("--photos", type=Path, help="also preprocess these photos here and run the models on them")
    parser.add_argument("--fault", choices=sorted(FAULTS), help="break this side's preprocessing on purpose")
    parser.add_argument("--exact-int8", action="store_true", help="session.x64quantprecision=1 (x86 only)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    photos = load_photos(args.photos)
    summary = {"versions": versions(), "fault": args.fault, "models": {}}
    for model in args.models:
        summary["models"][model.stem] = dump_model(model, args, photos)
    if photos:
        summary["crops"] = dump_crops(args.models[0], photos, args.out, args.fault)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    json.dump(summary["versions"], sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
