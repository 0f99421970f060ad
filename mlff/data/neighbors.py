"""Neighbour lists for molecules, periodic and mixed-periodic cells (through vesin).

The list is *full* (both i->j and j->i) and periodic images are described by Cartesian shift
vectors, so that ``r_ij = pos[j] - pos[i] + shift_ij`` for every edge, whatever the cell: cells
smaller than the cutoff simply produce many images of the same pair.
"""

from __future__ import annotations

import numpy as np
import vesin


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc,
    r_cut: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Full neighbour list within ``r_cut``.

    Parameters
    ----------
    positions : (n, 3) array, Å
    cell : (3, 3) array with lattice vectors as rows, or None for a molecule
    pbc : bool or three bools, periodicity along each lattice vector
    r_cut : cutoff radius, Å

    Returns
    -------
    edge_index : (2, E) int64, rows are (center i, neighbour j)
    edge_shift : (E, 3) float64, Cartesian shift in Å, ``r_ij = pos[j] - pos[i] + shift``
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if cell is None or not pbc.any():
        cell = np.zeros((3, 3))
    cell = np.asarray(cell, dtype=np.float64)
    if len(positions) == 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3))
    for axis in np.flatnonzero(pbc):
        if np.linalg.norm(cell[axis]) == 0.0:
            raise ValueError(
                f"the structure is periodic along lattice vector {axis} but that vector is zero; "
                "give the cell or set pbc=False along that direction"
            )
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-12 and pbc.all():
        raise ValueError("the periodic cell has zero volume; check the lattice vectors")
    nl = vesin.NeighborList(cutoff=float(r_cut), full_list=True)
    i, j, shifts = nl.compute(positions, cell, [bool(p) for p in pbc], "ijS")
    edge_index = np.stack([i, j]).astype(np.int64)
    edge_shift = shifts.astype(np.float64) @ cell
    return edge_index, edge_shift
