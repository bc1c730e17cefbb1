"""``edgecam train DATASET``: the argument parser and handler (torch is imported only when it runs)."""

from __future__ import annotations

import argparse

from edgecam.export.weights import ARCHS
from edgecam.model.metadata import LAYOUTS
from edgecam.training.pipeline import TrainOptions

_DEFAULTS = TrainOptions(dataset="")


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train your own classes on a folder of labelled images (transfer learning)",
        description="DATASET/<label>/*.jpg (a folder named 'inbox' is ignored), or DATASET/train/ "
        "and DATASET/val/ with the same layout. Writes OUT/<name>_int8.onnx (the file the daemon "
        "runs), OUT/<name>_fp32.onnx, OUT/<name>_confusion.png and OUT/<name>_report.txt.",
    )
    train.add_argument("dataset", metavar="DATASET")
    train.add_argument("--arch", default=_DEFAULTS.arch, choices=ARCHS,
                       help=f"ImageNet backbone (default {_DEFAULTS.arch}: its weights ship with "
                       "the build requirements; resnet18 needs torchvision's download)")
    train.add_argument("--out", default=_DEFAULTS.out_dir, help="output folder (default models)")
    train.add_argument("--name", help="output file stem (default: the dataset folder's name)")
    train.add_argument("--size", type=int, default=_DEFAULTS.size, help="input size, 96-320, multiple of 32")
    train.add_argument("--finetune", action="store_true",
                       help="after the head, also train the backbone's last stages")
    train.add_argument("--no-flip", dest="flip", action="store_false",
                       help="no mirrored training views (when left and right mean different things)")
    train.add_argument("--val-fraction", type=float, default=_DEFAULTS.val_fraction,
                       help="share of each class held out for validation (default 0.2; ignored "
                       "when DATASET has train/ and val/)")
    train.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="split, augmentation and init seed")
    train.add_argument("--device", default=_DEFAULTS.device, choices=("auto", "cpu", "cuda"),
                       help="auto (default): a CUDA GPU when torch sees one, else the CPU")
    train.add_argument("--engine", default=_DEFAULTS.engine, choices=("auto", "onnxruntime", "torch"),
                       help="what runs the frozen backbone (default: onnxruntime on CPU, torch on GPU)")
    train.add_argument("--threads", type=int, default=_DEFAULTS.threads, help="CPU threads (default: half the CPUs; on a busy machine fewer is faster)")
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
    train.add_argument("--layout", default=_DEFAULTS.layout, choices=LAYOUTS,
                       help="where normalization lives (as in model build)")
    train.add_argument("--cache-mb", type=int, default=_DEFAULTS.cache_mb,
                       help="memory for cached backbone outputs with --finetune (default 1024)")
    train.add_argument("--no-learning-curve", dest="learning_curve", action="store_false",
                       help="skip the 25%%/50%% runs behind the 'enough data?' verdict")
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from edgecam.cli.model import _setup_logging
    from edgecam.training import train_model

    _setup_logging()
    fields = set(TrainOptions.__dataclass_fields__)
    options = {k: v for k, v in vars(args).items() if k in fields}
    options["out_dir"] = args.out
    result = train_model(TrainOptions(**options))
    print(result.report)
    return 0
