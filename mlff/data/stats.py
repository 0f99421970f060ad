"""Dataset statistics that set the model's normalisation: per-species energy shifts (least squares
or given isolated-atom energies E0), force RMS scale and average neighbour count, and where the
pair repulsion switches off (the closest approach of each element pair). A converted
dataset's come from its stored frame table (:mod:`mlff.data.frame_table`), without a pass over
its frames."""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from . import frame_table, keys
from .neighbors import neighbor_list
from .readers import Frame
from .pairs import covalent_sum, pair_key


def species_counts(frames: Sequence[Frame], species: Sequence[str]) -> np.ndarray:
    index = {s: k for k, s in enumerate(species)}
    counts = np.zeros((len(frames), len(species)))
    for row, frame in enumerate(frames):
        for symbol in frame.atoms.get_chemical_symbols():
            counts[row, index[symbol]] += 1
    return counts


def energy_shifts(frames: Sequence[Frame], species: Sequence[str],
                  e0: Optional[Mapping[str, float]] = None) -> np.ndarray:
    """Per-species energy (eV/atom): the given ``e0`` or a least-squares fit of the total energies."""
    if e0:
        missing = [s for s in species if s not in e0]
        if missing:
            raise ValueError(f"E0 gives no isolated-atom energy for {missing}")
        return np.array([float(e0[s]) for s in species])
    table = frame_table.table_of(frames)
    if table is not None:
        counts, energies = frame_table.element_counts(table, species), table.energy
    else:
        counts, energies = species_counts(frames, species), np.array([f.energy for f in frames])
    shifts, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return shifts


def force_rms(frames: Sequence[Frame]) -> float:
    table = frame_table.table_of(frames)
    if table is not None:
        values = int(table.force_values.sum())
        rms = float(np.sqrt(table.force_squares.sum() / values)) if values else 0.0
    elif isinstance(frames, list):  # in memory: one array (the sum's order, and so a run, unchanged)
        forces = np.concatenate([f.forces.ravel() for f in frames if f.forces is not None] or [np.zeros(1)])
        rms = float(np.sqrt(np.mean(forces**2)))
    else:  # read from disk as iterated: running sums, nothing kept per atom
        squares, values = 0.0, 0
        for f in frames:
            if f.forces is not None:
                squares, values = squares + float(np.sum(np.square(f.forces))), values + f.forces.size
        rms = float(np.sqrt(squares / values)) if values else 0.0
    return rms if rms > 1e-8 else 1.0


def average_num_neighbors(frames: Sequence[Frame], r_cut: float, graphs: Optional[Sequence[dict]] = None) -> float:
    """Neighbours within ``r_cut`` per atom over ``frames`` (at least 1): from a converted
    dataset's frame table, else counted on ``graphs`` (the frames' atomic data at ``r_cut``, where
    already built), else on neighbour lists made here."""
    table = frame_table.table_of(frames)
    stored = frame_table.average_num_neighbors(table, r_cut) if table is not None else None
    if stored is not None:
        return stored
    edges = atoms = 0
    if graphs is not None:
        for graph in graphs:
            edges += int(graph[keys.EDGE_INDEX_KEY].shape[1])
            atoms += int(graph[keys.POSITIONS_KEY].shape[0])
    else:
        for frame in frames:
            a = frame.atoms
            edges += neighbor_list(a.positions, a.cell.array, a.pbc, r_cut)[0].shape[1]
            atoms += len(a)
    return max(edges / max(atoms, 1), 1.0)


def closest_pairs(frames: Sequence[Frame], cutoff: float) -> Dict[str, float]:
    """The shortest distance (Å) between two atoms of each element pair in ``frames`` (periodic
    images included), ``{"C-H": 0.99, ...}`` keyed as :func:`mlff.data.pairs.pair_key` writes
    pairs; pairs never closer than ``cutoff`` are left out."""
    table = frame_table.table_of(frames)
    stored = frame_table.closest_pairs(table, cutoff) if table is not None else None
    if stored is not None:
        return stored
    closest: Dict[str, float] = {}
    for frame in frames:
        a = frame.atoms
        edge_index, _, lengths = neighbor_list(a.positions, a.cell.array, a.pbc, cutoff, with_lengths=True)
        for key, distance in frame_table.pair_minima(a.get_chemical_symbols(), edge_index, lengths).items():
            closest[key] = min(closest.get(key, np.inf), distance)
    return dict(sorted(closest.items()))


def repulsion_radii(frames: Sequence[Frame], species: Sequence[str]) -> Dict[str, float]:
    """Where the pair repulsion of :mod:`mlff.nn.repulsion` switches off, from the training data:
    for each element pair whose closest approach in ``frames`` is shorter than the sum of its
    covalent radii, that distance (rounded down to 1 mÅ), so that the term acts only closer than
    any pair of the data; the other pairs keep the covalent sum and are left out."""
    covalent = {pair_key(a, b): covalent_sum(a, b) for a in species for b in species}
    closest = closest_pairs(frames, max(covalent.values()))
    return {key: math.floor(distance * 1000.0) / 1000.0 for key, distance in sorted(closest.items())
            if key in covalent and distance < covalent[key]}
