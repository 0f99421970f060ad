"""The export seam: one TorchScript file per model, read back with its metadata.

Writing a file (``deploy``) needs the model code (e3nn and the layers); reading and running one
does not, so the names of :mod:`.export` are imported when first used.
"""

from .._lazy import lazy_getattr
from .format import FORMAT_VERSION
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

__getattr__ = lazy_getattr(__name__, dict.fromkeys(("DeployedPotential", "deploy", "metadata_for"),
                                                  "mlff.modelfile.export"))
