"""``edgecam train DATASET``: the argument parser and handler.

Head-only training on the CPU imports no torch; ``--finetune`` and ``--device cuda`` do.
For a parent process (the web app): ``--progress-json -`` puts one JSON event per
line on stdout (the report then goes to stderr), SIGTERM cancels (exit 143, nothing
written), and everything else is as for a person at a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import TextIO

from edgecam.export.weights import ARCHS
from edgecam.images.header import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from edgecam.model.metadata import LAYOUTS
from edgecam.training.options import TRAINERS, TrainOptions

_DEFAULTS = TrainOptions(dataset="")
EXIT_CANCELLED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train your own classes on a folder of labelled images (transfer learning)",
        description="DATASET/<label>/*.jpg (a folder named 'inbox' is ignored), or DATASET/train/ "
        "and DATASET/val/ with the same layout. Writes OUT/<name>_int8.onnx (the file the daemon "
        "runs), OUT/<name>_fp32.onnx, OUT/<name>_confusion.png and OUT/<name>_report.txt. "
        "Head-only training on the CPU (the default) needs no torch: the backbone is cut from "
        "an edgecam model file (--backbone, else OUT/efficientnet_lite0_160_fp32.onnx or the "
        "other files `edgecam model build` writes).",
    )
    train.add_argument("dataset", metavar="DATASET")
    train.add_argument("--arch", default=None, choices=ARCHS,
                       help="ImageNet backbone (default: the --backbone file's, else efficientnet_lite0, "
                       "whose weights ship with the build requirements; resnet18 needs torchvision's download)")
    train.add_argument("--out", default=_DEFAULTS.out_dir, help="output folder (default models)")
    train.add_argument("--name", help="output file stem (default: <camera>_<region> for a folder the daemon "
                       "collected, <collect.dir>/<camera>/<region>; else the dataset folder's name)")
    train.add_argument("--force", action="store_true",
                       help="replace OUT/<name>_* even when they belong to another region or dataset")
    train.add_argument("--size", type=int, default=None,
                       help="input size, 96-320, multiple of 32 (default: the backbone's, else 160)")
    train.add_argument("--finetune", action="store_true",
                       help="after the head, also train the backbone's last stages (needs torch)")
    train.add_argument("--no-flip", dest="flip", action="store_false",
                       help="no mirrored training views (when left and right mean different things)")
    train.add_argument("--val-fraction", type=float, default=_DEFAULTS.val_fraction,
                       help="share of each class held out for validation (default 0.2; ignored "
                       "when DATASET has train/ and val/)")
    train.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="split, augmentation and init seed")
    train.add_argument("--trainer", default=_DEFAULTS.trainer, choices=TRAINERS,
                       help="onnx: head only on the CPU, no torch; torch: the network in torch "
                       "(default auto: torch for --finetune or --device cuda, else onnx)")
    train.add_argument("--backbone", metavar="MODEL.onnx",
                       help="edgecam model file to cut the frozen backbone from (FP32, or INT8 dequantized; "
                       "default: OUT/<arch>_<size>_fp32.onnx, then _int8.onnx)")
    train.add_argument("--device", default=_DEFAULTS.device, choices=("auto", "cpu", "cuda"),
                       help="cuda: train on a GPU with torch (default: the CPU)")
    train.add_argument("--engine", default=_DEFAULTS.engine, choices=("auto", "onnxruntime", "torch"),
                       help="torch trainer: what runs the frozen backbone (default: onnxruntime on CPU, "
                       "torch on GPU)")
    train.add_argument("--threads", type=int, default=_DEFAULTS.threads,
                       help="CPU threads (default: half the CPUs; on a busy machine fewer is faster)")
    train.add_argument("--views", type=int, default=_DEFAULTS.views,
                       help=f"views per training image: itself + random ones (default {_DEFAULTS.views})")
    train.add_argument("--epochs", dest="head_epochs", type=int, default=_DEFAULTS.head_epochs,
                       help=f"most epochs for the head (early stopping; default {_DEFAULTS.head_epochs})")
    train.add_argument("--finetune-epochs", type=int, default=_DEFAULTS.finetune_epochs,
                       help=f"most epochs for --finetune (default {_DEFAULTS.finetune_epochs})")
    train.add_argument("--calib-count", type=int, default=_DEFAULTS.calib_count,
                       help="training images used to calibrate INT8 (default 96)")
    train.add_argument("--activations", default=_DEFAULTS.activations, choices=("uint8", "int8"),
                       help="INT8 activation type (default uint8)")
    train.add_argument("--layout", default=None, choices=LAYOUTS,
                       help="where normalization lives (as in model build; default: the backbone's)")
    train.add_argument("--cache-mb", type=int, default=_DEFAULTS.cache_mb,
                       help="memory for cached backbone outputs with --finetune (default 1024)")
    train.add_argument("--no-learning-curve", dest="learning_curve", action="store_false",
                       help="skip the 25%%/50%% runs behind the 'enough data?' verdict")
    train.add_argument("--max-image-pixels", type=int, default=MAX_IMAGE_PIXELS,
                       help=f"leave out images whose header declares more pixels (default {MAX_IMAGE_PIXELS}, "
                       "the web app's preview.http.max_image_pixels)")
    train.add_argument("--max-image-bytes", type=int, default=MAX_IMAGE_BYTES,
                       help=f"leave out larger files (default {MAX_IMAGE_BYTES}, the web app's "
                       "preview.http.max_upload_bytes)")
    train.add_argument("--progress-json", metavar="FILE",
                       help="write progress as JSON lines to FILE ('-': stdout, and the report to stderr)")
    train.set_defaults(func=run_train)


@contextlib.contextmanager
def _json_stream(target: str | None) -> Iterator[TextIO | None]:
    if target is None:
        yield None
    elif target == "-":
        yield sys.stdout
    else:
        with open(target, "a", encoding="utf-8") as handle:
            yield handle


def run_train(args: argparse.Namespace) -> int:
    from edgecam.cli.model import _setup_logging
    from edgecam.errors import EdgecamError
    from edgecam.training import train_model
    from edgecam.training.events import Cancelled, cancel_on_sigterm, emitting, too_late_to_cancel

    _setup_logging()
    fields = set(TrainOptions.__dataclass_fields__)
    options = {k: v for k, v in vars(args).items() if k in fields}
    options["out_dir"] = args.out
    with _json_stream(args.progress_json) as stream, emitting(stream) as sink, cancel_on_sigterm():
        sink.emit("start", dataset=args.dataset, out=args.out)
        try:
            result = train_model(TrainOptions(**options))
        except Cancelled:
            sink.emit("cancelled")
            print("edgecam train: cancelled (SIGTERM); no model was written", file=sys.stderr)
            return EXIT_CANCELLED
        except KeyboardInterrupt:
            sink.emit("cancelled")
            raise
        except EdgecamError as err:
            sink.emit("error", message=str(err))
            raise
        except Exception as err:
            if isinstance(err, MemoryError) or "bad_alloc" in str(err):
                message = ("out of memory: raise the memory limit (RLIMIT_AS needs about 1 GB of address "
                           "space at --threads 2; a cgroup, about 400 MB) or use fewer --threads")
                sink.emit("error", message=message)
                raise EdgecamError(message) from None
            sink.emit("error", message=f"{type(err).__name__}: {err}")  # a bug: the traceback follows
            raise
    print(result.report, file=sys.stderr if args.progress_json == "-" else sys.stdout)
    if too_late_to_cancel():
        print("edgecam train: SIGTERM came while the files were being written: too late to cancel, "
              "the model above is complete", file=sys.stderr)
    return 0
