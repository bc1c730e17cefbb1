"""The INT8 limits of the arm64 check, derived on the host from why x86 and ARM differ.

    tolerance.py --inputs DIR --photos DIR --out FILE MODEL.onnx [...]   (host venv)

Why they differ (docs/arm64.md): with exact integer accumulation on both
sides (ARM always; x86 with ``session.x64quantprecision``, see dump_outputs.py),
what remains is rounding at the graph's requantization points. Each build of
onnxruntime computes the same real value there with a different formula: x86
QLinearAdd in float with FMA (AVX2) or without (SSE), ARM's in 22-bit fixed point
with a rounding shift; float layers (EfficientNet-Lite0's FP32 stem) summed in a
different order. A value near a rounding boundary then lands one step apart, and
these one-step flips spread through the later layers to the logits.

The common reference is the QDQ graph evaluated literally, as ONNX defines it
(graph optimization off: DequantizeLinear -> float op -> QuantizeLinear). The
host's fused kernels deviate from it by D (in output quantization steps: the
largest |diff| over all logits and inputs, and the largest per-input mean
|diff|). An ARM build deviates from the same reference by the same kind of
flips, so host and ARM may differ by up to 2*D (triangle inequality). Limits:
max 2*D_max, at least 1 step (one flip of one logit); mean 2*D_mean, at least
one step on one logit. FP32 models keep a fixed 1e-4 (float kernels differ only
in summation order: ~1e-5 measured).

Writes FILE: {model stem: {"kind", "scale", "dev_max", "dev_mean", "limit_max",
"limit_mean"}} (steps for int8, output units for fp32); prints one line per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgecam.bench.arm64.compare import is_quantized, output_scale
from edgecam.bench.arm64.dump_outputs import load_photos, make_preprocessor, open_session

FP32_TOL = 1e-4


def inputs_for(model: Path, inputs: Path, photos: list) -> list[np.ndarray]:
    tensors = [np.load(f) for f in sorted((inputs / model.stem).glob("*.npy"))]
    pre = make_preprocessor(open_session(model, 1), model.name)
    return tensors + [pre(image) for _, image in photos]


def derive(model: Path, tensors: list[np.ndarray]) -> dict:
    if not is_quantized(model):
        return {"kind": "fp32", "scale": 1.0, "limit_max": FP32_TOL}
    scale = output_scale(model)
    if scale is None:
        raise SystemExit(f"tolerance: {model.name}: no DequantizeLinear scale on the output")
    fused, literal = open_session(model, 2, exact_int8=True), open_session(model, 2, literal=True)
    name = fused.get_inputs()[0].name
    dev_max = dev_mean = 0.0
    logits = 1
    for tensor in tensors:
        a, b = fused.run(None, {name: tensor})[0], literal.run(None, {name: tensor})[0]
        steps = np.abs(a.astype(np.float64) - b) / scale
        dev_max, dev_mean = max(dev_max, float(steps.max())), max(dev_mean, float(steps.mean()))
        logits = steps.size
    dev_max, dev_mean = round(dev_max, 2), round(dev_mean, 4)  # outputs are whole steps: float noise only
    return {"kind": "int8", "scale": scale, "dev_max": dev_max, "dev_mean": dev_mean,
            "limit_max": max(1.0, 2 * dev_max), "limit_mean": max(1.0 / logits, 2 * dev_mean)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    photos = load_photos(args.photos)
    found = {}
    for model in args.models:
        tensors = inputs_for(model, args.inputs, photos)
        found[model.stem] = entry = derive(model, tensors)
        if entry["kind"] == "int8":
            print(f"tolerance int8 {model.stem}: host fused kernels vs literal QDQ evaluation on "
                  f"{len(tensors)} inputs: max {entry['dev_max']:g} steps, mean {entry['dev_mean']:.3f} steps "
                  f"-> limits 2x: max {entry['limit_max']:g}, mean {entry['limit_mean']:.3f} steps")
    args.out.write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
