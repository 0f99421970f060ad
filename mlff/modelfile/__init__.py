"""The export seam: one TorchScript file per model, read back with its metadata.

Writing a file (``deploy``) needs the model code (e3nn and the layers); reading and running one
does not, so the names of :mod:`.export` are imported when first used.
"""

import importlib

from .format import FORMAT_VERSION
from .load import DeployedModel, ModelFileError, ModelMetadata, load, model_from_file, read_metadata

_EXPORT_NAMES = ("DeployedPotential", "deploy", "metadata_for")

__all__ = [
    "FORMAT_VERSION",
    "DeployedModel",
    "DeployedPotential",
    "ModelFileError",
    "ModelMetadata",
    "deploy",
    "load",
    "metadata_for",
    "model_from_file",
    "read_metadata",
]


def __getattr__(name):
    if name in _EXPORT_NAMES:
        return getattr(importlib.import_module(".export", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
