"""Where two builds of onnxruntime part ways inside an INT8 (QDQ) model: per-layer differences.

    layer_diff.py augment MODEL.onnx OUT.onnx              (host venv: needs onnx)
    layer_diff.py dump OUT.onnx --inputs DIR --out DIR [--exact-int8] [--threads N]
    layer_diff.py compare DIR_A DIR_B [-v]

``augment`` makes every QuantizeLinear output a graph output as well (onnxruntime
still fuses the QDQ groups: the last output stays bit-identical to the plain
model's). ``dump`` runs it on each ``DIR/*.npy`` and saves all outputs (numpy +
onnxruntime only, so it runs inside the arm64 root too, or under ``qemu-x86_64
-cpu Haswell`` for an AVX2-only x86). ``compare`` prints, per input, how many
logits differ, how many layers differ and the first one that does (``-v``: every
differing layer, in graph order).

Inside a root kept by ``scripts/arm64-check.sh --keep`` (CACHE/root):

    mount -t proc proc CACHE/root/proc && mount --bind CACHE/cpuinfo-pi4 CACHE/root/proc/cpuinfo
    env -i PATH=/opt/edgecam-venv/bin:/usr/bin:/bin QEMU_CPU=cortex-a72 chroot CACHE/root \\
        python /check/layer_diff.py dump /check/m_layers.onnx --inputs /check/li --out /check/la72
    umount CACHE/root/proc/cpuinfo CACHE/root/proc
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def augment(model: Path, out: Path) -> int:
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load(str(model))
    graph = proto.graph
    inits = {init.name: init for init in graph.initializer}
    present = {o.name for o in graph.output}
    added = 0
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.output[0] in present:
            continue
        zero_point = inits.get(node.input[2]) if len(node.input) > 2 else None
        elem = zero_point.data_type if zero_point is not None else TensorProto.UINT8
        graph.output.append(helper.make_tensor_value_info(node.output[0], elem, None))
        added += 1
    onnx.save(proto, str(out))
    print(f"{out}: {added} QuantizeLinear outputs added")
    return 0


def dump(model: Path, inputs: Path, out: Path, exact_int8: bool, threads: int) -> int:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if exact_int8:
        options.add_session_config_entry("session.x64quantprecision", "1")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out.mkdir(parents=True, exist_ok=True)
    (out / "names.txt").write_text("".join(o.name + "\n" for o in session.get_outputs()))
    for file in sorted(inputs.glob("*.npy")):
        outputs = session.run(None, {name: np.load(file)})
        np.savez(out / f"{file.stem}.npz", **{f"o{i:03d}": v for i, v in enumerate(outputs)})
    return 0


def compare(a_dir: Path, b_dir: Path, verbose: bool) -> int:
    names = (a_dir / "names.txt").read_text().split()
    for file in sorted(a_dir.glob("*.npz")):
        a, b = np.load(file), np.load(b_dir / file.name)
        rows = []
        for i, name in enumerate(names):
            x, y = a[f"o{i:03d}"].astype(np.float64), b[f"o{i:03d}"].astype(np.float64)
            diff = np.abs(x - y)
            rows.append((name, int((diff > 0).sum()), diff.size, float(diff.max())))
        layers = [(i, row) for i, row in enumerate(rows[1:], 1) if row[1]]
        first = layers[0][1][0] if layers else "none"
        _, count, size, worst = rows[0]
        print(f"{file.stem}: output max abs diff {worst:.4g} ({count}/{size} differ); "
              f"{len(layers)}/{len(rows) - 1} layers differ; first: {first}")
        for i, (name, count, size, worst) in layers if verbose else ():
            print(f"   #{i:3d} {name[:72]:72s} {count:7d}/{size:7d} max {worst:.0f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    aug = sub.add_parser("augment")
    aug.add_argument("model", type=Path)
    aug.add_argument("out", type=Path)
    run = sub.add_parser("dump")
    run.add_argument("model", type=Path)
    run.add_argument("--inputs", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--exact-int8", action="store_true", help="session.x64quantprecision=1 (x86 only)")
    run.add_argument("--threads", type=int, default=1)
    cmp = sub.add_parser("compare")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    cmp.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.what == "augment":
        return augment(args.model, args.out)
    if args.what == "dump":
        return dump(args.model, args.inputs, args.out, args.exact_int8, args.threads)
    return compare(args.a, args.b, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
