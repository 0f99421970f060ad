"""Front ends that evaluate a deployed model: ASE calculator and pymatgen helpers."""

from .ase import MLFFCalculator
from .pymatgen import predict, to_ase

__all__ = ["MLFFCalculator", "predict", "to_ase"]
