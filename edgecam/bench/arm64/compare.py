"""Compare what the arm64 root computed with what the host computed (host venv: numpy, onnx).

    compare.py outputs --host DIR --arm DIR --tolerance FILE MODEL.onnx [...]
        what dump_outputs.py wrote on each side. The image pipeline must be
        bit-identical: the crops (decode + resize + crop) and the input tensors
        (colour order, mean/std). Raw outputs must stay within the limits
        tolerance.py derived: FP32 max abs diff; INT8 max and mean abs diff in
        steps of the output's quantization scale (read from the DequantizeLinear
        that produces the graph output). Top-1 must match wherever the host's own
        top-1/top-2 margin exceeds twice the max limit (closer inputs: reported).
    compare.py classify --model MODEL.onnx --host FILE --arm FILE --tolerance FILE
        the stdout of `edgecam classify --top 10` on both sides: the same Top-3 labels per
        image, or labels the host itself scores as tied (see rank_verdict).

Prints one report line per check / model / image; exits 1 on any disagreement.
"""

from __future__ import annotations

import argparse
import json
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


def load_tolerance(path: Path) -> dict:
    """The limits tolerance.py derived on the host, per model stem."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"compare: cannot read the tolerance file {path}: {err}") from None


def compare_model(model: Path, host: Path, arm: Path, tol: dict) -> bool:
    """Raw outputs within the derived limits; top-1 where the host's own margin makes it meaningful.

    If every logit moves by at most L, the top-1 can change only where the host's top-1 and
    top-2 are within 2*L: top-1 is compared on the other inputs and reported for the rest.
    """
    host_files = sorted((host / model.stem).glob("*.npy"))
    if not host_files:
        print(f"FAIL {model.stem}: no host outputs in {host / model.stem}")
        return False
    int8 = tol["kind"] == "int8"
    unit, limit = (tol["scale"] if int8 else 1.0), tol["limit_max"]
    worst = worst_mean = 0.0
    decisive = same = 0
    for file in host_files:
        arm_file = arm / model.stem / file.name
        if not arm_file.is_file():
            print(f"FAIL {model.stem}: the arm64 root wrote no {arm_file.name}")
            return False
        a, b = np.load(file).ravel(), np.load(arm_file).ravel()
        if a.shape != b.shape or not np.isfinite(b).all():
            print(f"FAIL {model.stem}: {file.name}: shape {b.shape} / finite={np.isfinite(b).all()} vs host {a.shape}")
            return False
        diff = np.abs(a.astype(np.float64) - b) / unit
        worst, worst_mean = max(worst, float(diff.max())), max(worst_mean, float(diff.mean()))
        top = np.sort(a)[::-1]
        if (top[0] - top[1]) / unit > 2 * limit:
            decisive += 1
            same += int(a.argmax() == b.argmax())
    close = len(host_files) - decisive
    top1 = (f"top-1 same {same}/{decisive} where the host's margin > {2 * limit:g}"
            f"{' steps' if int8 else ''} ({close} input{'s' if close != 1 else ''} closer)")
    if int8:
        # outputs are whole multiples of the scale: the 0.01 absorbs float noise only
        ok = worst <= limit + 0.01 and worst_mean <= tol["limit_mean"] + 1e-6 and same == decisive
        print(f"int8 {model.stem}: max abs diff {worst * unit:.6g} = {worst:.2f} quantization steps "
              f"(output scale {unit:.6g}, limit {limit:g}), largest mean {worst_mean:.3f} steps "
              f"(limit {tol['limit_mean']:.3f}); {top1} -> {'ok' if ok else 'FAIL'}")
        return ok
    ok = worst < limit and same == decisive
    print(f"fp32 {model.stem}: max abs diff {worst:.3e} (limit {limit:.0e}); {top1} -> {'ok' if ok else 'FAIL'}")
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


def compare_tensors(host: Path, arm: Path) -> bool:
    """Each side's full preprocessing (crop, colour order, mean/std): elementwise numpy, so bit-identical."""
    files = sorted((host / "tensors").glob("*/*.npy"))
    if not files:
        return True
    worst, differing = 0.0, []
    for file in files:
        other = arm / "tensors" / file.parent.name / file.name
        a = np.load(file)
        b = np.load(other) if other.is_file() else None
        if b is None or a.shape != b.shape:
            differing.append(f"{file.parent.name}/{file.stem}")
            worst = float("inf")
            continue
        diff = float(np.abs(a.astype(np.float64) - b).max())
        if diff > 0:
            differing.append(f"{file.parent.name}/{file.stem}")
            worst = max(worst, diff)
    ok = not differing
    what = "bit-identical" if ok else f"{len(differing)} differ (max abs diff {worst:.4g}: {', '.join(differing[:3])})"
    print(f"preprocess tensors ({len(files)} model/photo pairs, crop + colour order + mean/std): {what} "
          f"(limit: bit-identical) -> {'ok' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    outs = sub.add_parser("outputs")
    outs.add_argument("models", nargs="+", type=Path)
    outs.add_argument("--host", type=Path, required=True)
    outs.add_argument("--arm", type=Path, required=True)
    outs.add_argument("--tolerance", type=Path, required=True, help="the JSON tolerance.py wrote")
    cls = sub.add_parser("classify")
    cls.add_argument("--host", type=Path, required=True)
    cls.add_argument("--arm", type=Path, required=True)
    cls.add_argument("--model", type=Path, required=True, help="the model both sides ran")
    cls.add_argument("--tolerance", type=Path, required=True, help="the JSON tolerance.py wrote")
    cls.add_argument("--tie", type=float, default=0.1,
                     help="log-probability gap below which two labels count as tied; INT8 models add "
                          "2 x the derived max limit: each of the two logits may move by it")
    args = parser.parse_args(argv)
    tolerance = load_tolerance(args.tolerance)
    if args.what == "classify":
        tol = tolerance.get(args.model.stem)
        if tol is None:
            print(f"FAIL classify: no tolerance for {args.model.stem} in {args.tolerance}")
            return 1
        int8 = tol["kind"] == "int8"
        tie = args.tie + (2 * tol["limit_max"] * tol["scale"] if int8 else 0.0)
        return 0 if compare_classify(args.host, args.arm, tol["kind"], tie) else 1
    results = [compare_crops(args.host, args.arm), compare_tensors(args.host, args.arm)]
    for model in args.models:
        if model.stem not in tolerance:
            print(f"FAIL {model.stem}: no tolerance in {args.tolerance}")
            results.append(False)
            continue
        results.append(compare_model(model, args.host, args.arm, tolerance[model.stem]))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
