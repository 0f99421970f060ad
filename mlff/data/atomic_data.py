"""Atomic data as a plain dictionary of tensors, built from ASE ``Atoms``, and batching.

See :mod:`mlff.data.keys` for the fields, shapes and units.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from . import keys
from .neighbors import neighbor_list

AtomicData = Dict[str, torch.Tensor]


class SpeciesMap:
    """Maps atomic numbers to a model's species indices (the order of ``species``)."""

    def __init__(self, species: Sequence[str]):
        unknown = [s for s in species if s not in atomic_numbers]
        if unknown:
            raise ValueError(f"unknown chemical symbol(s) {unknown}; use symbols such as 'Cu', 'O'")
        if len(set(species)) != len(species):
            raise ValueError(f"species must be unique, got {list(species)}")
        self.species = list(species)
        self._table = np.full(max(atomic_numbers.values()) + 1, -1, dtype=np.int64)
        for index, symbol in enumerate(species):
            self._table[atomic_numbers[symbol]] = index

    def __call__(self, numbers: np.ndarray) -> np.ndarray:
        numbers = np.asarray(numbers, dtype=np.int64)
        indices = self._table[numbers]
        if (indices < 0).any():
            missing = sorted({chemical_symbols[z] for z in numbers[indices < 0]})
            raise ValueError(
                f"element(s) {missing} not in the model, which knows {self.species}; "
                "use a model trained on these elements"
            )
        return indices


def from_ase(atoms, species_map: SpeciesMap, r_cut: float, total_charge: float = 0.0,
             edge_lengths: bool = False) -> AtomicData:
    """One structure as atomic data (float64), with its neighbour list (and the edge lengths under
    ``keys.EDGE_LENGTH_KEY`` with ``edge_lengths``: the neighbour search gives them at no cost)."""
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms; nothing to evaluate")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    positions = np.asarray(atoms.positions, dtype=np.float64)
    edge_index, edge_shift, lengths = neighbor_list(positions, cell, pbc, r_cut, with_lengths=True)
    n = len(atoms)
    data = {
        keys.POSITIONS_KEY: torch.from_numpy(positions.copy()),
        keys.SPECIES_KEY: torch.from_numpy(species_map(atoms.numbers)),
        keys.EDGE_INDEX_KEY: torch.from_numpy(edge_index),
        keys.EDGE_SHIFT_KEY: torch.from_numpy(edge_shift),
        keys.BATCH_KEY: torch.zeros(n, dtype=torch.int64),
        keys.PTR_KEY: torch.tensor([0, n], dtype=torch.int64),
        keys.CELL_KEY: torch.from_numpy(cell.copy()).unsqueeze(0),
        keys.PBC_KEY: torch.from_numpy(pbc.copy()).unsqueeze(0),
        keys.TOTAL_CHARGE_KEY: torch.tensor([float(total_charge)], dtype=torch.float64),
    }
    if edge_lengths:
        data[keys.EDGE_LENGTH_KEY] = torch.from_numpy(lengths)
    return data


def collate(structures: Sequence[AtomicData]) -> AtomicData:
    """Concatenate single-structure data into one batch (disjoint graphs)."""
    if not structures:
        raise ValueError("cannot batch an empty list of structures")
    counts = [int(s[keys.POSITIONS_KEY].shape[0]) for s in structures]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    out: AtomicData = {}
    per_atom = (keys.POSITIONS_KEY, keys.SPECIES_KEY, keys.REF_FORCES_KEY)
    per_graph = (keys.CELL_KEY, keys.PBC_KEY, keys.TOTAL_CHARGE_KEY, keys.REF_ENERGY_KEY, keys.REF_STRESS_KEY,
                 keys.HAS_STRESS_KEY, keys.REF_DIPOLE_KEY, keys.HAS_DIPOLE_KEY, keys.LOSS_WEIGHT_KEY)
    for key in per_atom + per_graph + (keys.EDGE_SHIFT_KEY,):
        if key in structures[0]:
            out[key] = torch.cat([s[key] for s in structures])
    out[keys.EDGE_INDEX_KEY] = torch.cat(
        [s[keys.EDGE_INDEX_KEY] + int(off) for s, off in zip(structures, offsets)], dim=1
    )
    out[keys.BATCH_KEY] = torch.repeat_interleave(
        torch.arange(len(structures)), torch.tensor(counts)
    )
    out[keys.PTR_KEY] = torch.from_numpy(offsets.astype(np.int64))
    return out
