"""The export seam: one TorchScript file per model, read back with its metadata."""

from .export import FORMAT_VERSION, DeployedPotential, deploy, metadata_for
from .load import DeployedModel, ModelFileError, ModelMetadata, load, model_from_file, read_metadata

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
