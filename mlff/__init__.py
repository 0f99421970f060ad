"""mlff: E(3)-equivariant, conservative machine-learned interatomic potentials.

Public API::

    config = mlff.ModelConfig.preset("small")
    model = mlff.build_model(config, species=["Cu", "O"])
    mlff.deploy(model, "model.pt")          # one TorchScript file with metadata
    deployed = mlff.load("model.pt")        # engine contract + metadata
    atoms.calc = mlff.MLFFCalculator("model.pt")
    mlff.predict(pymatgen_structure, "model.pt")

Names are imported lazily, so ``import mlff.lammps`` (run by ``import lammps``) stays cheap.
"""

from ._lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "DeployedModel": "mlff.modelfile",
    "ModelFileError": "mlff.modelfile",
    "ModelMetadata": "mlff.modelfile",
    "deploy": "mlff.modelfile",
    "load": "mlff.modelfile",
    "read_metadata": "mlff.modelfile",
    "MLFFCalculator": "mlff.calculators",
    "predict": "mlff.calculators",
    "ModelConfig": "mlff.model",
    "Potential": "mlff.model",
    "build_model": "mlff.model",
}

__all__ = sorted(_EXPORTS) + ["__version__"]
__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__():
    return __all__
