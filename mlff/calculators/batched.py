"""Many structures per model call: the disjoint union of their graphs, split back per structure.

A model file's ``forward`` takes one graph. Structures that share no edge are one graph whose
per-atom outputs (energies, forces, virials) are each structure's own, and a structure's energy
and virial are the sums of its atoms' (the model forms its totals that way), so one call gives
every structure's numbers to rounding (tests/calculators/test_batched.py: 1e-10 in float64). Small
structures then cost a share of one call instead of a call each: Python, graph and dispatch
overhead per call dominate below a few hundred atoms, on a GPU even more.

Models with extra outputs (a dipole head, ``outputs``) are summed per structure by the model
itself and go one structure per call (:func:`batchable`).
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from ase.calculators.calculator import CalculatorError

from ..data import keys
from .ase import MLFFCalculator, _check_finite, committee_spread


def batchable(calc: MLFFCalculator) -> bool:
    """Whether ``calc``'s models can evaluate many structures per call (no per-structure extra outputs)."""
    return not calc.model.metadata.outputs


def _groups(sizes: Sequence[int], batch_atoms: int) -> List[List[int]]:
    """Consecutive structures in groups of at most ``batch_atoms`` atoms (a larger one alone)."""
    groups: List[List[int]] = []
    atoms = 0
    for k, n in enumerate(sizes):
        if groups and atoms + n <= batch_atoms:
            groups[-1].append(k)
            atoms += n
        else:
            groups.append([k])
            atoms = n
    return groups


def _named(check, index: int, names: Optional[Sequence[str]]):
    """``check()``, its error (a structure's problem) starting with the structure's name."""
    try:
        return check()
    except (CalculatorError, ValueError) as error:
        name = names[index] if names is not None else f"structure {index}"
        raise type(error)(f"{name}: {error}") from error


# atoms per model call by default: on the CPU the time per atom is flat from about a thousand atoms;
# on a GPU a call of 1 000 atoms is launch-bound (H100, 2 x 64 l_max 2 in float32: 26 ms for 1 000
# atoms, 44 ms for 8 000; docs/gpu.md)
BATCH_ATOMS = {"cpu": 1024, "cuda": 8192}


def predict_batched(calc: MLFFCalculator, structures: Sequence, batch_atoms: Optional[int] = None,
                    names: Optional[Sequence[str]] = None) -> Iterator[dict]:
    """Energy (eV), ``energies`` (eV/atom), ``forces`` (eV/Å) and, for cells periodic in three
    directions, ``stress`` (3x3, eV/Å^3, ASE sign; None otherwise) of each ASE ``Atoms`` in
    ``structures``, in order, up to ``batch_atoms`` atoms per model call (default
    :data:`BATCH_ATOMS` of the device); a committee adds
    ``energy_std`` and ``forces_std`` as :class:`MLFFCalculator` does. The calculator's checks
    (elements, overlapping atoms, non-finite outputs) apply to each structure; their errors start
    with its name (``names``, default ``structure K``)."""
    if not batchable(calc):
        raise ValueError("this model has per-structure outputs (a dipole head or extra outputs): evaluate "
                         "its structures one at a time with MLFFCalculator")
    device = calc.model.device
    batch_atoms = BATCH_ATOMS.get(device.type, 1024) if batch_atoms is None else batch_atoms
    if batch_atoms < 1:
        raise ValueError(f"batch_atoms must be a positive number of atoms, got {batch_atoms}")
    for group in _groups([len(s) for s in structures], batch_atoms):
        chosen = [structures[k] for k in group]
        graphs = [_named(lambda: calc._build_graph(structures[k]), k, names) for k in group]
        offsets = np.cumsum([0] + [len(a) for a in chosen])
        joined = {
            "positions": torch.cat([g["positions"].to(device) for g in graphs]),
            "edge_index": torch.cat([g["edge_index"].to(device) + int(o) for g, o in zip(graphs, offsets)], dim=1),
            "edge_shift": torch.cat([g["edge_shift"].to(device) for g in graphs]),
            "species": torch.cat([g["species"].to(device) for g in graphs]),
        }
        outs = []
        for model in calc.models:
            out = model(**joined, chunk_atoms=calc.chunk_atoms)
            outs.append({name: out[name].detach().cpu().numpy()
                         for name in (keys.ATOMIC_ENERGY_KEY, keys.FORCES_KEY, keys.ATOMIC_VIRIAL_KEY)})
        for k, atoms in enumerate(chosen):
            rows = slice(int(offsets[k]), int(offsets[k + 1]))
            members = [{keys.ENERGY_KEY: np.array(o[keys.ATOMIC_ENERGY_KEY][rows].sum()),
                        keys.FORCES_KEY: o[keys.FORCES_KEY][rows],
                        keys.VIRIAL_KEY: o[keys.ATOMIC_VIRIAL_KEY][rows].sum(axis=0),
                        keys.ATOMIC_ENERGY_KEY: o[keys.ATOMIC_ENERGY_KEY][rows]} for o in outs]
            for member in members:
                _named(lambda: _check_finite(member), group[k], names)
            mean = {name: np.mean([m[name] for m in members], axis=0) for name in members[0]}
            result = {"energy": float(mean[keys.ENERGY_KEY]), "energies": mean[keys.ATOMIC_ENERGY_KEY],
                      "forces": mean[keys.FORCES_KEY],
                      "stress": -mean[keys.VIRIAL_KEY] / atoms.get_volume() if np.all(atoms.pbc) else None}
            if len(members) > 1:
                result.update(committee_spread([float(m[keys.ENERGY_KEY]) for m in members],
                                               [m[keys.FORCES_KEY] for m in members], mean[keys.FORCES_KEY]))
            yield result
