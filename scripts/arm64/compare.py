"""Compare what the arm64 root computed with what the host computed (host venv: numpy, onnx).

    compare.py outputs --host DIR --arm DIR MODEL.onnx [...]
        raw outputs written by dump_outputs.py. FP32 models must agree to
        --fp32-tol (max abs diff); INT8 (QDQ) models to --int8-steps steps of
        the output's quantization scale, read from the DequantizeLinear that
        produces the graph output. The top-1 index must match for every input.
        With crops saved (dump_outputs.py --photos), also the image pipeline: bit-identical.
    compare.py classify --model MODEL.onnx --host FILE --arm FILE
        the stdout of `edgecam classify --top 10` on both sides: the same Top-3 labels per
        image, or labels the host itself scores as tied (see rank_verdict).

Prints one report line per model / image; exits 1 on any disagreement.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np

PASS_THROUGH = {"Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze"}


def output_scale(model_path: Path) -> float | None:
    """The scale of the DequantizeLinear feeding the graph output, or None for a float model."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path), load_external_data=False)
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    inits = {init.name: init for init in graph.initializer}
    consts = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
    name = graph.output[0].name
    while name in producers:
        node = producers[name]
        if node.op_type == "DequantizeLinear":
            scale_name = node.input[1]
            if scale_name in inits:
                return float(numpy_helper.to_array(inits[scale_name]).ravel()[0])
            if scale_name in consts:
                return float(numpy_helper.to_array(consts[scale_name].attribute[0].t).ravel()[0])
            return None
        if node.op_type not in PASS_THROUGH:
            return None
        name = node.input[0]
    return None


def is_quantized(model_path: Path) -> bool:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for node in model.graph.node)


def compare_model(model: Path, host: Path, arm: Path, fp32_tol: float, int8_steps: float) -> bool:
    host_files = sorted((host / model.stem).glob("*.npy"))
    if not host_files:
        print(f"FAIL {model.stem}: no host outputs in {host / model.stem}")
        return False
    worst, same_top1 = 0.0, 0
    for file in host_files:
        arm_file = arm / model.stem / file.name
        if not arm_file.is_file():
            print(f"FAIL {model.stem}: the arm64 root wrote no {arm_file.name}")
            return False
        a, b = np.load(file), np.load(arm_file)
        if a.shape != b.shape or not np.isfinite(b).all():
            print(f"FAIL {model.stem}: {file.name}: shape {b.shape} / finite={np.isfinite(b).all()} vs host {a.shape}")
            return False
        worst = max(worst, float(np.abs(a - b).max()))
        same_top1 += int(a.ravel().argmax() == b.ravel().argmax())
    total = len(host_files)
    top1_ok = same_top1 == total
    if is_quantized(model):
        scale = output_scale(model)
        if scale is None:
            print(f"FAIL int8 {model.stem}: cannot find the output's DequantizeLinear scale")
            return False
        steps = worst / scale
        ok = steps <= int8_steps + 0.01 and top1_ok  # outputs are multiples of the scale: float noise only
        print(f"int8 {model.stem}: max abs diff {worst:.6g} = {steps:.2f} quantization steps "
              f"(output scale {scale:.6g}, limit {int8_steps:g}), top-1 same {same_top1}/{total} "
              f"-> {'ok' if ok else 'FAIL'}")
        return ok
    ok = worst < fp32_tol and top1_ok
    print(f"fp32 {model.stem}: max abs diff {worst:.3e} (limit {fp32_tol:.0e}), "
          f"top-1 same {same_top1}/{total} -> {'ok' if ok else 'FAIL'}")
    return ok


HEADER = re.compile(r"^(\S.*?)  \((\d+)x(\d+)\)  ([\d.]+) ms$")
RANK = re.compile(r"^\s+(\d+)\. (.*?)  ([\d.]+)$")


def ranked_by_image(path: Path) -> dict[str, list[tuple[str, float]]]:
    """{image name: [(label, score), ...] best first} parsed from the stdout of `edgecam classify`.

    Its format: one ``PATH  (WxH)  12.34 ms`` line per image, then ``  1. label  0.5432`` lines.
    """
    found: dict[str, list[tuple[str, float]]] = {}
    current: list[tuple[str, float]] | None = None
    for line in path.read_text(errors="replace").splitlines():
        header, rank = HEADER.match(line), RANK.match(line)
        if header:
            current = found.setdefault(Path(header.group(1)).name, [])
        elif rank and current is not None:
            current.append((rank.group(2), float(rank.group(3))))
    return found


def rank_verdict(host: list[tuple[str, float]], arm: list[tuple[str, float]], tie: float) -> tuple[str, float]:
    """'same', 'near-tie' or 'FAIL' for the arm64 Top-3 against the host's ranking, and the worst gap.

    A label differing at a rank is accepted only as a near-tie: the host itself gives the arm64
    label a probability within ``exp(tie)`` of its own label at that rank (or both are < 1 %, noise).
    """
    host_p = dict(host)
    host3, arm3 = [label for label, _ in host[:3]], [label for label, _ in arm[:3]]
    if len(host3) < 3 or len(arm3) < 3:
        return "FAIL", float("inf")
    if host3 == arm3:
        return "same", 0.0
    worst = 0.0
    for (want, p_want), got in zip(host[:3], arm3):
        if got == want:
            continue
        p_got = host_p.get(got, 0.0)
        if max(p_got, p_want) < 0.01:
            continue
        gap = abs(math.log(max(p_got, 1e-6) / max(p_want, 1e-6)))
        worst = max(worst, gap)
    return ("near-tie" if worst <= tie else "FAIL"), worst


def compare_classify(host: Path, arm: Path, kind: str, tie: float) -> bool:
    want, got = ranked_by_image(host), ranked_by_image(arm)
    if not want:
        print(f"FAIL classify: no results parsed from the host's output {host}")
        return False
    ok = True
    for image, ranking in sorted(want.items()):
        theirs = got.get(image, [])
        verdict, gap = rank_verdict(ranking, theirs, tie)
        ok &= verdict != "FAIL"
        labels, arm_labels = [label for label, _ in ranking[:3]], [label for label, _ in theirs[:3]]
        diff = max((abs(a[1] - b[1]) for a, b in zip(ranking[:3], theirs[:3])), default=float("nan"))
        extra = f", log-prob gap {gap:.3f} <= {tie:.3f}" if verdict == "near-tie" else ""
        print(f"classify top-3 {kind} {image}: host {labels} | arm64 {arm_labels} -> {verdict} "
              f"(max score diff {diff:.4f}{extra})")
    return ok


def compare_crops(host: Path, arm: Path) -> bool:
    """The runtime's decode + resize + crop on both sides: bit-identical (INTER_LINEAR_EXACT)."""
    files = sorted((host / "crops").glob("*.npy"))
    if not files:
        return True
    worst, differing, total = 0, 0, 0
    for file in files:
        a = np.load(file).astype(np.int16)
        b = np.load(arm / "crops" / file.name).astype(np.int16)
        if a.shape != b.shape:
            print(f"FAIL preprocess {file.stem}: crop shape {b.shape} vs host {a.shape}")
            return False
        diff = np.abs(a - b)
        worst, differing, total = max(worst, int(diff.max())), differing + int((diff > 0).sum()), total + diff.size
    ok = worst == 0
    what = "bit-identical" if worst == 0 else f"max {worst} LSB, {100.0 * differing / total:.1f}% of values differ"
    print(f"preprocess crops ({len(files)} photos, decode + resize + crop): {what} (limit: bit-identical) "
          f"-> {'ok' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    outs = sub.add_parser("outputs")
    outs.add_argument("models", nargs="+", type=Path)
    outs.add_argument("--host", type=Path, required=True)
    outs.add_argument("--arm", type=Path, required=True)
    outs.add_argument("--fp32-tol", type=float, default=1e-4)
    outs.add_argument("--int8-steps", type=float, default=2.0)
    cls = sub.add_parser("classify")
    cls.add_argument("--host", type=Path, required=True)
    cls.add_argument("--arm", type=Path, required=True)
    cls.add_argument("--model", type=Path, required=True, help="the model both sides ran")
    cls.add_argument("--tie", type=float, default=0.1,
                     help="log-probability gap below which two labels count as tied (FP32); INT8 models "
                          "add 4 output quantization steps: each logit may move 2")
    args = parser.parse_args(argv)
    if args.what == "classify":
        scale = output_scale(args.model) if is_quantized(args.model) else None
        tie = args.tie + (4 * scale if scale else 0.0)
        kind = "int8" if is_quantized(args.model) else "fp32"
        return 0 if compare_classify(args.host, args.arm, kind, tie) else 1
    results = [compare_crops(args.host, args.arm)]
    results += [compare_model(m, args.host, args.arm, args.fp32_tol, args.int8_steps) for m in args.models]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
