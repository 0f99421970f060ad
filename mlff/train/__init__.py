"""Training: configuration, loss, metrics, EMA, checkpoints, data parallelism and the loop.

Names are imported when first used, so that modules that need one part (the metrics, for
``mlff evaluate``) do not import the model code and the training loop.
"""

from .._lazy import lazy_getattr

_EXPORTS = {
    "TrainConfig": "mlff.train.config",
    "load_config": "mlff.train.config",
    "Trainer": "mlff.train.trainer",
    "TrainResult": "mlff.train.trainer",
    "train": "mlff.train.trainer",
    "load_checkpoint": "mlff.train.checkpoint",
    "model_from_checkpoint": "mlff.train.checkpoint",
    "save_checkpoint": "mlff.train.checkpoint",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__():
    return __all__
