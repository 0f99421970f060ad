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


def predict(structure, model: str | os.PathLike | DeployedModel | MLFFCalculator, device: str = "cpu",
            batch_atoms: int | None = None):
    """Energy (eV), per-atom energies, forces (eV/Å) and, when periodic, stress (Voigt, eV/Å^3).

    ``structure`` is a pymatgen ``Structure``/``Molecule`` or ASE ``Atoms``, or a list of them (then
    a list of results, up to ``batch_atoms`` atoms per model call, by default 1024 on the CPU and
    8192 on a GPU: :mod:`mlff.calculators.batched`);
    ``model`` a model path, a loaded model or a calculator (reuse one to avoid reloading the file).
    """
    from ase.stress import full_3x3_to_voigt_6_stress

    from .batched import batchable, predict_batched

    calc = model if isinstance(model, MLFFCalculator) else MLFFCalculator(model, device=device)
    if not isinstance(structure, (list, tuple)):
        return _predict_one(to_ase(structure), calc)
    structures = [to_ase(s) for s in structure]
    if not batchable(calc):
        return [_predict_one(atoms, calc) for atoms in structures]
    results = []
    for result in predict_batched(calc, structures, batch_atoms):
        one = {"energy": result["energy"], "energies": result["energies"], "forces": result["forces"]}
        if result["stress"] is not None:
            one["stress"] = full_3x3_to_voigt_6_stress(result["stress"])
        results.append(one)
    return results


def _predict_one(atoms, calc: MLFFCalculator) -> dict:
    atoms.calc = calc
    result = {
        "energy": atoms.get_potential_energy(),
        "energies": atoms.get_potential_energies(),
        "forces": atoms.get_forces(),
    }
    if np.all(atoms.pbc):
        result["stress"] = atoms.get_stress()
    return result
