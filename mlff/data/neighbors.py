"""Neighbour lists for molecules, periodic and mixed-periodic cells (through vesin).

The list is *full* (both i->j and j->i) and periodic images are described by Cartesian shift
vectors, so that ``r_ij = pos[j] - pos[i] + shift_ij`` for every edge, whatever the cell: cells
smaller than the cutoff simply produce many images of the same pair.

Every structure is checked before native code sees it (:func:`check_structure`): non-finite or
absurdly large positions and cells, degenerate periodic cells, and cells so much smaller than the
cutoff that the list would not fit in memory are a ``ValueError`` that names the problem. vesin's
cell list caps its number of bins at 1e5 by rescaling them, which leaves zero bins along a short
axis of an elongated or sparse box (an integer division by zero that kills the process); such
boxes go to ASE's neighbour list instead (NumPy, the same edges).
"""

from __future__ import annotations

import math

import numpy as np
import vesin

MAX_LENGTH = 1.0e6  # Å: no coordinate, lattice vector or structure extent beyond (0.1 mm)
MAX_IMAGES = 1_000_000  # periodic images of the cell within the cutoff
MAX_EDGES = 1.0e9  # estimated edges of a periodic cell (tens of GB as a list)
_VESIN_MAX_CELLS = 1e5  # vesin's cap on its number of bins (its cpu_cell_list.cpp)


def check_structure(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_cut: float) -> np.ndarray:
    """Raise ``ValueError`` for input no neighbour search should see (see the module docstring);
    returns the cell to search with (:func:`_search_cell`)."""
    return _checked(positions, cell, pbc, r_cut)[0]


def _checked(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_cut: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`check_structure`'s search cell and the distances between its opposite faces (zeros
    for a molecule)."""
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1)) if len(positions) else []
    if len(bad):
        raise ValueError(f"the positions of atoms {bad[:10].tolist()} are not finite (NaN or inf); "
                         "fix the structure")
    if not np.isfinite(cell).all():
        raise ValueError(f"the cell contains NaN or inf: {cell.tolist()}; give finite lattice vectors (Å)")
    if not (math.isfinite(r_cut) and r_cut > 0):
        raise ValueError(f"the cutoff must be a positive number of Å, got {r_cut!r}")
    if len(positions) and np.abs(positions).max() > MAX_LENGTH:
        raise ValueError(f"a coordinate is {np.abs(positions).max():.3g} Å, beyond {MAX_LENGTH:.0e} Å: "
                         "positions must be in Å (wrap them into the cell, or check the units)")
    for axis in range(3):
        if np.abs(cell[axis]).max() > MAX_LENGTH:
            raise ValueError(f"lattice vector {axis} is {np.abs(cell[axis]).max():.3g} Å long, beyond "
                             f"{MAX_LENGTH:.0e} Å: give the cell in Å")
    lengths = np.linalg.norm(cell, axis=1)
    for axis in np.flatnonzero(pbc):
        if lengths[axis] == 0.0:
            raise ValueError(
                f"the structure is periodic along lattice vector {axis} but that vector is zero; "
                "give the cell or set pbc=False along that direction"
            )
    if pbc.all() and abs(np.linalg.det(cell)) < 1e-12:
        raise ValueError("the periodic cell has zero volume; check the lattice vectors")
    if not pbc.any():
        return np.zeros((3, 3)), np.zeros(3)  # a molecule: the cell plays no part
    search = _search_cell(positions, cell, pbc, r_cut)
    spacing = _face_distances(search)
    if not np.all(spacing[pbc] > 0.0):
        raise ValueError(f"the periodic lattice vectors {np.flatnonzero(pbc).tolist()} are parallel "
                         "(the cell is degenerate); check the cell")
    images = int(np.prod([2 * math.ceil(r_cut / spacing[k]) + 1 for k in np.flatnonzero(pbc)]))
    edges = len(positions) ** 2 * (4.0 / 3.0) * math.pi * r_cut**3 / abs(np.linalg.det(cell)) if pbc.all() else 0.0
    if images > MAX_IMAGES or edges > MAX_EDGES:
        raise ValueError(
            f"the cell is far smaller than the cutoff ({r_cut} Å): its faces are "
            f"{', '.join(f'{d:.3g}' for d in spacing[pbc])} Å apart, so each atom would see "
            f"{images:.3g} periodic images of the cell ({edges:.3g} edges); check the cell and its units")
    return search, spacing


def _search_cell(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_cut: float) -> np.ndarray:
    """The cell given to the search: the periodic lattice vectors as they are; each non-periodic one
    replaced by a direction normal to the periodic ones, as long as the structure is wide (their
    length and direction do not change the edges: no image is taken along them, but a vector far
    shorter than the structure makes a cell list of absurd size)."""
    out = np.array(cell, dtype=np.float64)
    periodic = np.flatnonzero(pbc)
    if len(periodic) in (0, 3):
        return out
    length = max(_diameter(positions) + 2.0 * r_cut, 1.0)
    free = [k for k in range(3) if not pbc[k]]
    if len(periodic) == 2:
        normal = np.cross(out[periodic[0]], out[periodic[1]])
        if np.linalg.norm(normal) == 0.0:  # parallel periodic vectors: reported by the caller
            normal = np.eye(3)[np.argmin(np.abs(out[periodic[0]]))]
        out[free[0]] = normal / np.linalg.norm(normal) * length
        if np.dot(np.cross(out[0], out[1]), out[2]) < 0:
            out[free[0]] *= -1.0
    else:
        a = out[periodic[0]] / np.linalg.norm(out[periodic[0]])
        u = np.cross(a, np.eye(3)[np.argmin(np.abs(a))])
        u /= np.linalg.norm(u)
        v = np.cross(a, u)
        out[free[0]], out[free[1]] = u * length, v * length
    return out


def _diameter(positions: np.ndarray) -> float:
    """An upper bound of the structure's extent along any direction (twice the largest coordinate
    distance from the centroid), Å."""
    return 2.0 * float(np.abs(positions - positions.mean(axis=0)).max()) if len(positions) else 0.0


def _face_distances(cell: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell (0 where it is degenerate): the volume over
    the area ``|cell[k + 1] x cell[k + 2]|``. The cross products are written out on Python floats
    (the same operations as np.cross, which on 3-vectors costs 20x as much: three of them were a
    third of a small cell's neighbour list)."""
    (a0, a1, a2), (b0, b1, b2), (c0, c1, c2) = np.asarray(cell, dtype=np.float64).tolist()
    normals = ((b1 * c2 - b2 * c1, b2 * c0 - b0 * c2, b0 * c1 - b1 * c0),
               (c1 * a2 - c2 * a1, c2 * a0 - c0 * a2, c0 * a1 - c1 * a0),
               (a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0))
    volume = abs(float(np.linalg.det(cell)))
    areas = [math.sqrt(x * x + y * y + z * z) for x, y, z in normals]
    return np.array([volume / area if area > 0 else 0.0 for area in areas])


def _vesin_is_safe(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_cut: float,
                   spacing: np.ndarray) -> bool:
    """Whether vesin's cell list keeps at least one bin along every axis (see the module docstring):
    its bins are ``trunc(face distance / cutoff)`` per axis; above 1e5 in all it rescales them by
    their ratios, which can round an axis to zero. Exact for 3D-periodic cells; elsewhere vesin
    sizes its box from the atoms, so only boxes that need no rescaling are given to it.
    ``spacing``: the cell's face distances (:func:`_checked`)."""
    if pbc.all():
        faces = spacing
    else:
        faces = np.where(pbc, np.linalg.norm(cell, axis=1), _diameter(positions) + 2.0 * r_cut)
    bins = np.maximum(np.trunc(faces / r_cut), 1.0)
    if np.prod(bins) <= _VESIN_MAX_CELLS:
        return True
    if not pbc.all():
        return False
    # vesin's rescaling, step by step: each count is truncated before the next is derived from it
    ratio_xy, ratio_yz = bins[0] / bins[1], bins[1] / bins[2]
    z = np.cbrt(_VESIN_MAX_CELLS / (ratio_xy * ratio_yz * ratio_yz))
    y = ratio_yz * np.trunc(z)
    x = ratio_xy * np.trunc(y)
    return min(x, y, z) >= 1.01  # before truncation, with a margin against rounding at 1


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
    positions = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64).reshape(3, 3)
    r_cut = float(r_cut)
    search, spacing = _checked(positions, cell, pbc, r_cut)
    if len(positions) == 0:
        empty = (np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3)))
        return empty + (np.zeros(0),) if with_lengths else empty
    if _vesin_is_safe(positions, search, pbc, r_cut, spacing):
        nl = vesin.NeighborList(cutoff=r_cut, full_list=True)
        i, j, shifts, lengths = nl.compute(positions, search, [bool(p) for p in pbc], "ijSd")
    else:
        from ase.neighborlist import primitive_neighbor_list

        i, j, shifts, lengths = primitive_neighbor_list("ijSd", pbc, search, positions, r_cut)
    edge_index = np.empty((2, len(i)), dtype=np.int64)
    edge_index[0], edge_index[1] = i, j
    edge_shift = np.asarray(shifts, dtype=np.float64) @ search  # zero along non-periodic vectors
    if with_lengths:
        return edge_index, edge_shift, np.asarray(lengths, dtype=np.float64)
    return edge_index, edge_shift
