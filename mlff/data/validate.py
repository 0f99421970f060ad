"""Checks run on a dataset before training; each error names the frame (file:index) and the fix."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import frame_table
from .neighbors import neighbor_list
from .readers import Frame


class DataValidationError(ValueError):
    pass


# Å: the overlapping-atoms check searches at least this far and keeps the shortest edge. A search
# to 0.5 Å gives the cell list thousands of bins: 4x the time of 1.5 Å for 32 atoms, 10x for 256.
OVERLAP_SEARCH = 1.5


def closest_pair(positions: np.ndarray, edge_index: np.ndarray, edge_shift: np.ndarray,
                 lengths: np.ndarray | None = None):
    """``(i, j, distance)`` of the shortest edge of a neighbour list, or None without edges.
    ``i == j`` means an atom and its own periodic image. ``lengths``: the edge lengths, where the
    neighbour search gave them (saves recomputing them: 0.13 s for 2.5 million edges)."""
    if edge_index.shape[1] == 0:
        return None
    if lengths is None:
        lengths = np.linalg.norm(positions[edge_index[1]] - positions[edge_index[0]] + edge_shift, axis=1)
    k = int(np.argmin(lengths))
    return int(edge_index[0, k]), int(edge_index[1, k]), float(lengths[k])


def shortest_period(cell: np.ndarray, pbc) -> float:
    """The shortest lattice translation along the periodic directions (how far every atom is from
    its nearest periodic image), searched over combinations of up to two of each lattice vector:
    exact for reduced cells, an upper bound for very skewed ones; inf without periodicity or for a
    non-finite cell (reported by the neighbour list)."""
    cell = np.asarray(cell, dtype=np.float64)
    periodic = np.flatnonzero(np.asarray(pbc, dtype=bool))
    if len(periodic) == 0 or not np.isfinite(cell).all():
        return float("inf")
    grid = np.array(np.meshgrid(*[np.arange(-2, 3)] * len(periodic), indexing="ij")).reshape(len(periodic), -1).T
    grid = grid[np.any(grid != 0, axis=1)]
    with np.errstate(over="ignore", invalid="ignore"):
        lengths = np.linalg.norm(grid @ cell[periodic], axis=1)
    return float(np.nanmin(lengths)) if np.isfinite(lengths).any() else float("inf")


def describe_pair(i: int, j: int, distance: float) -> str:
    """``atoms 0 and 1 are 0.000 Å apart`` / ``atom 0 is 0.500 Å from its own periodic image``."""
    if i == j:
        return f"atom {i} is {distance:.3f} Å from its own periodic image (the cell is too small)"
    return f"atoms {min(i, j)} and {max(i, j)} are {distance:.3f} Å apart"


def check_min_distance(min_distance: float) -> None:
    """``min_distance`` is a distance in Å, >= 0 (0 disables the overlap check)."""
    if not min_distance >= 0:
        raise ValueError(f"min_distance is a distance in Å and must be >= 0 (0 disables the check), "
                         f"got {min_distance}")


def validate_frames(frames: Sequence[Frame], species: Sequence[str] | None = None,
                    need_energy: bool = True, need_forces: bool = True,
                    min_distance: float = 0.5) -> None:
    """Raise :class:`DataValidationError` at the first problem: missing labels, NaN/inf, wrong
    shapes, a structure no neighbour search takes (non-finite or degenerate cell, lengths not in Å),
    atoms closer than ``min_distance`` Å (0: not checked), or elements outside ``species``. A converted
    dataset is checked on its frame table (the rest was checked when it was converted); only the
    first frame with a problem is read, for the message."""
    check_min_distance(min_distance)
    if not frames:
        raise DataValidationError("the dataset is empty: check train_file / valid_file")
    table = frame_table.table_of(frames)
    if table is not None and min_distance <= frame_table.NEIGHBOR_CUTOFFS[-1]:
        bad = frame_table.first_problem(table, species, need_energy, need_forces, min_distance)
        if bad is not None:
            validate_frames([frames[bad]], species, need_energy, need_forces, min_distance)
            raise DataValidationError(f"{frames[bad].source}: its stored summary (the frame table) disagrees with the "
                                      "frame: convert the data again with `mlff data convert`")
        return
    known = set(species) if species is not None else None
    for frame in frames:
        where = frame.source
        n = len(frame.atoms)
        if n == 0:
            raise DataValidationError(f"{where}: frame has no atoms")
        if need_energy and frame.energy is None:
            raise DataValidationError(f"{where}: no energy label; set energy_key to the name used in the file "
                                      "(e.g. energy, free_energy, REF_energy)")
        if need_forces and frame.forces is None:
            raise DataValidationError(f"{where}: no forces label; set forces_key, or set the forces loss "
                                      "weight to 0 to train on energies only")
        if frame.forces is not None and frame.forces.shape != (n, 3):
            raise DataValidationError(f"{where}: forces have shape {frame.forces.shape}, expected ({n}, 3)")
        for name, value in (("energy", frame.energy), ("forces", frame.forces), ("stress", frame.stress),
                            ("positions", frame.atoms.positions)):
            if value is not None and not np.all(np.isfinite(value)):
                raise DataValidationError(f"{where}: {name} contains NaN or inf; remove the frame or fix the file")
        if frame.stress is not None and not frame.atoms.pbc.all():
            raise DataValidationError(f"{where}: stress label on a structure that is not periodic in 3D")
        if known is not None:
            missing = sorted(set(frame.atoms.get_chemical_symbols()) - known)
            if missing:
                raise DataValidationError(f"{where}: element(s) {missing} not in the model's species "
                                          f"{sorted(known)}; add them to `species` or drop the frame")
        positions = frame.atoms.positions
        try:  # the neighbour search's own checks of the structure (cell, units), with the frame named
            edge_index, shift, lengths = neighbor_list(positions, frame.atoms.cell.array, frame.atoms.pbc,
                                                       max(min_distance, OVERLAP_SEARCH), with_lengths=True)
        except ValueError as error:
            raise DataValidationError(f"{where}: {error}") from error
        pair = closest_pair(positions, edge_index, shift, lengths)
        if pair is not None and pair[2] < min_distance:  # never with min_distance 0: the check is off
            raise DataValidationError(f"{where}: {describe_pair(*pair)} (< min_distance {min_distance} Å): "
                                      "overlapping atoms; fix or drop the frame")
