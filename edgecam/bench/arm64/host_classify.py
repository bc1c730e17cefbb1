"""`edgecam classify` on the host with exact INT8 accumulation: the arm64 check's reference.

    host_classify.py [edgecam classify arguments]   (host venv)

The daemon opens its sessions with onnxruntime's defaults. On an x86 CPU without
VNNI (AVX2, or AVX-512 without VNNI) onnxruntime's U8S8 kernels sum pairs of
products in saturating 16-bit arithmetic (VPMADDUBSW): under ``qemu-x86_64 -cpu
Haswell`` that moved EfficientNet-Lite0 INT8 logits by up to 20 output steps.
ARM's kernels, VNNI and AMX accumulate exactly. So the host's reference sets
``session.x64quantprecision`` (exact U8U8 kernels on every x86 SIMD level, as
dump_outputs.py --exact-int8 does); on CPUs with VNNI it changes no output.
"""

from __future__ import annotations

import sys

import onnxruntime as ort


class ExactInt8Session(ort.InferenceSession):
    """An InferenceSession with ``session.x64quantprecision=1`` added to its options."""

    def __init__(self, path_or_bytes, sess_options=None, *args, **kwargs):  # noqa: ANN001 - onnxruntime's signature
        options = sess_options if sess_options is not None else ort.SessionOptions()
        options.add_session_config_entry("session.x64quantprecision", "1")
        super().__init__(path_or_bytes, options, *args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    ort.InferenceSession = ExactInt8Session  # edgecam's classifier looks it up when it opens a model
    from edgecam.cli import main as edgecam_main

    return edgecam_main(["classify", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
