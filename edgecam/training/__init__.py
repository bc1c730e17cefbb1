"""``edgecam train``: transfer learning on an ImageFolder dataset, exported like ``model build``.

Never imported by ``edgecam run``. Head-only training on the CPU (the default) needs
no torch (``onnx_trainer``); ``--finetune`` and GPU training import it (``torch_trainer``).
"""

from edgecam.training.options import TrainOptions
from edgecam.training.pipeline import TrainResult, train_model

__all__ = ["TrainOptions", "TrainResult", "train_model"]
