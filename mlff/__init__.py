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

import importlib
import sys
import types

__version__ = "0.1.0"

_EXPORTS = {
    "DeployedModel": "mlff.deploy",
    "ModelFileError": "mlff.deploy",
    "ModelMetadata": "mlff.deploy",
    "deploy": "mlff.deploy",
    "load": "mlff.deploy",
    "read_metadata": "mlff.deploy",
    "MLFFCalculator": "mlff.calculators",
    "predict": "mlff.calculators",
    "ModelConfig": "mlff.model",
    "Potential": "mlff.model",
    "build_model": "mlff.model",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mlff' has no attribute {name!r}")


def __dir__():
    return __all__


class _Package(types.ModuleType):
    """``mlff.deploy`` is the public function, though ``mlff/deploy/`` is also a subpackage:
    importing the subpackage must not replace the function on the package."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return  # the subpackage stays importable through sys.modules
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
