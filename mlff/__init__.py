"""mlff: E(3)-equivariant, conservative machine-learned interatomic potentials.

Public API::

    config = mlff.ModelConfig.preset("small")
    model = mlff.build_model(config, species=["Cu", "O"])
    mlff.deploy(model, "model.pt")          # one TorchScript file with metadata
    deployed = mlff.load("model.pt")        # engine contract + metadata
    atoms.calc = mlff.MLFFCalculator("model.pt")
    mlff.predict(pymatgen_structure, "model.pt")
"""

__version__ = "0.1.0"

from .calculators import MLFFCalculator, predict
from .deploy import DeployedModel, ModelFileError, ModelMetadata, deploy, load, read_metadata
from .model import ModelConfig, Potential, build_model

__all__ = [
    "DeployedModel",
    "MLFFCalculator",
    "ModelConfig",
    "ModelFileError",
    "ModelMetadata",
    "Potential",
    "__version__",
    "build_model",
    "deploy",
    "load",
    "predict",
    "read_metadata",
]
