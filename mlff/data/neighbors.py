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
    with_lengths: bool = False,
) -> tuple[np.ndarray, ...]:
    """Full neighbour list within ``r_cut``.

    Parameters
    ----------
    positions : (n, 3) array, Å
    cell : (3, 3) array with lattice vectors as rows, or None for a molecule
    pbc : bool or three bools, periodicity along each lattice vector
    r_cut : cutoff radius, Å
    with_lengths : also return the edge lengths (computed by the neighbour search anyway)

    Returns
    -------
    edge_index : (2, E) int64, rows are (center i, neighbour j)
    edge_shift : (E, 3) float64, Cartesian shift in Å, ``r_ij = pos[j] - pos[i] + shift``
    lengths : (E,) float64, ``|r_ij|`` in Å, only with ``with_lengths``
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if cell is None or not pbc.any():
        cell = np.zeros((3, 3))
    cell = np.asarray(cell, dtype=np.float64)
    if len(positions) == 0:
        empty = (np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3)))
        return empty + (np.zeros(0),) if with_lengths else empty
    for axis in np.flatnonzero(pbc):
        if np.linalg.norm(cell[axis]) == 0.0:
            raise ValueError(
                f"the structure is periodic along lattice vector {axis} but that vector is zero; "
                "give the cell or set pbc=False along that direction"
            )
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-12 and pbc.all():
        raise ValueError("the periodic cell has zero volume; check the lattice vectors")
    nl = vesin.NeighborList(cutoff=float(r_cut), full_list=True)
    i, j, shifts, lengths = nl.compute(positions, cell, [bool(p) for p in pbc], "ijSd")
    edge_index = np.empty((2, len(i)), dtype=np.int64)
    edge_index[0], edge_index[1] = i, j
    edge_shift = shifts.astype(np.float64) @ cell
    if with_lengths:
        return edge_index, edge_shift, np.asarray(lengths, dtype=np.float64)
    return edge_index, edge_shift
