"""``edgecam train``: transfer learning on an ImageFolder dataset, exported like ``model build``.

Never imported by ``edgecam run``; torch is imported inside the functions.
"""

from edgecam.training.pipeline import TrainOptions, TrainResult, train_model

__all__ = ["TrainOptions", "TrainResult", "train_model"]
