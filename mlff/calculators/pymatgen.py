"""pymatgen ``Structure`` / ``Molecule`` front end (converted to ASE ``Atoms``)."""

from __future__ import annotations

import os

import numpy as np

from ..modelfile import DeployedModel
from .ase import MLFFCalculator


def to_ase(structure):
    """A pymatgen ``Structure`` or ``Molecule`` (or ASE ``Atoms``) as ASE ``Atoms``."""
    from ase import Atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    if isinstance(structure, Atoms):
        return structure.copy()
    return AseAtomsAdaptor.get_atoms(structure)


def predict(structure, model: str | os.PathLike | DeployedModel | MLFFCalculator, device: str = "cpu") -> dict:
    """Energy (eV), per-atom energies, forces (eV/Å) and, when periodic, stress (Voigt, eV/Å^3).

    ``structure`` is a pymatgen ``Structure``/``Molecule`` or ASE ``Atoms``; ``model`` a model path,
    a loaded model or a calculator (reuse one to avoid reloading the file).
    """
    calc = model if isinstance(model, MLFFCalculator) else MLFFCalculator(model, device=device)
    atoms = to_ase(structure)
    atoms.calc = calc
    result = {
        "energy": atoms.get_potential_energy(),
        "energies": atoms.get_potential_energies(),
        "forces": atoms.get_forces(),
    }
    if np.all(atoms.pbc):
        result["stress"] = atoms.get_stress()
    return result
