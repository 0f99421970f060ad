"""A neighbour list in torch, on whatever device the positions are (for ``MLFFCalculator`` on a GPU,
where the host list was about half of a call at 65 000 atoms; see docs/gpu.md).

A cell list for any structure the host list takes (:func:`mlff.data.neighbors.check_structure`):
bulk, slabs, wires and molecules, triclinic cells and cells smaller than the cutoff. Atoms are
binned in the fractional coordinates of a *search cell* (the periodic lattice vectors, completed by
directions normal to them where the structure is not periodic): along a periodic axis ``nb`` bins
tile the cell, along a free axis they tile the atoms' extent, each at least ``r_cut`` thick unless
the whole cell is thinner. An atom is compared with every atom of the bins within ``reach`` bins
of its own (``reach = ceil(r_cut / thickness)``: 1 unless the cell is thinner than the cutoff),
where a bin index outside ``[0, nb)`` along a periodic axis is that bin in the neighbouring image
of the cell. Distinct bin offsets are distinct (bin, image) pairs, whatever ``nb``, so every image
of every atom within ``r_cut`` is found exactly once. Along a free axis there are no images.

Where bins outnumber atoms many times over (two molecules far apart), only occupied bins are stored
(sorted, looked up by binary search), so memory follows the atoms, not the volume; each bin's atoms
sit in a padded table, and the comparisons run in chunks of atoms that bound the memory. The result has
:func:`mlff.data.neighbors.neighbor_list`'s contract (full list, Cartesian shifts with
``r_ij = pos[j] - pos[i] + shift``, zero along free axes) and the same edges, in another order (the
model sorts them by centre).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from .neighbors import _search_cell

MAX_CANDIDATES = 1 << 22  # slots of the table read at once (about 200 MB of indices and distances)
MAX_BINS_PER_AXIS = 1 << 20  # the bins' linear index stays far inside int64


def _face_distances(cell: torch.Tensor) -> torch.Tensor:
    volume = torch.linalg.det(cell).abs()
    areas = torch.stack([torch.linalg.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]).norm() for k in range(3)])
    return volume / areas


def search_cell(cell, pbc) -> np.ndarray:
    """The cell the atoms are binned in: the periodic lattice vectors as they are, the others
    replaced by directions normal to them (their length plays no part); a unit cube for a molecule."""
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if not pbc.any():
        return np.eye(3)
    return _search_cell(np.zeros((1, 3)), cell, pbc, 1.0)


def neighbor_list(positions: torch.Tensor, cell: torch.Tensor, r_cut: float, pbc=(True, True, True),
                  max_candidates: int = MAX_CANDIDATES) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full neighbour list within ``r_cut``, on ``positions.device``, for a structure that
    :func:`mlff.data.neighbors.check_structure` accepts (it is not checked again here).

    Parameters
    ----------
    positions : (n, 3) float64, Å (need not be wrapped into the cell)
    cell : (3, 3) lattice vectors as rows, Å, a tensor (on any device) or an array; any values along
        non-periodic directions
    r_cut : cutoff radius, Å
    pbc : three bools, periodicity along each lattice vector

    Returns
    -------
    edge_index : (2, E) int64; edge_shift : (E, 3) float64 (Å); lengths : (E,) float64 (Å)
    """
    device, dtype = positions.device, positions.dtype
    n = positions.shape[0]
    periodic = [bool(p) for p in np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))]
    if n == 0:
        return (torch.zeros((2, 0), dtype=torch.int64, device=device), positions.new_zeros((0, 3)),
                positions.new_zeros(0))
    box = torch.as_tensor(search_cell(torch.as_tensor(cell).detach().cpu().numpy(), periodic), dtype=dtype, device=device)
    faces = _face_distances(box.cpu())
    is_periodic = torch.tensor(periodic, device=device)

    frac = positions @ torch.linalg.inv(box)
    # periodic axes: each atom's own image of the cell (positions - image0 @ box lie in the cell)
    image0 = torch.where(is_periodic, torch.floor(frac), torch.zeros_like(frac))
    wrapped = positions - image0 @ box
    low = torch.where(is_periodic, torch.zeros(3, dtype=dtype, device=device), frac.min(0).values)
    span = torch.where(is_periodic, torch.ones(3, dtype=dtype, device=device), frac.max(0).values - low)
    widths = (span.cpu() * faces).tolist()  # Å between the first and last bin's outer faces
    nb = [max(1, min(MAX_BINS_PER_AXIS, int(math.floor(w / r_cut)))) for w in widths]
    # bins thinner than the cutoff (a periodic cell thinner than it): look further
    reach = [max(1, math.ceil(r_cut * nb[k] / widths[k] - 1e-12)) if periodic[k] else 1 for k in range(3)]
    bins = torch.tensor(nb, device=device)
    scaled = torch.where(span > 0, (frac - image0 - low) / torch.where(span > 0, span, 1.0), 0.0)
    atom_bin = torch.minimum(torch.floor(scaled * bins).to(torch.int64), bins - 1).clamp(min=0)

    linear = (atom_bin[:, 0] * nb[1] + atom_bin[:, 1]) * nb[2] + atom_bin[:, 2]
    order = torch.argsort(linear, stable=True)
    occupied, counts = torch.unique_consecutive(linear[order], return_counts=True)
    slots = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.repeat_interleave(torch.arange(occupied.shape[0], device=device), counts)
    # a row per bin where they are few (a direct lookup), else per occupied bin (a binary search)
    dense = nb[0] * nb[1] * nb[2] <= 8 * n + 1024
    num_rows = nb[0] * nb[1] * nb[2] if dense else occupied.shape[0]
    table = torch.full((num_rows + 1, slots), -1, dtype=torch.int64, device=device)  # the last row: empty
    table[occupied[rank] if dense else rank, torch.arange(n, device=device) - starts[rank]] = order

    offsets = torch.tensor(list(itertools.product(*(range(-r, r + 1) for r in reach))), dtype=torch.int64,
                           device=device)
    r_cut_sq = r_cut * r_cut
    axes = wrapped.t().contiguous()  # (3, n): the wrapped positions by component
    centers, neighbours, shifts, lengths = [], [], [], []
    chunk = max(1, max_candidates // (offsets.shape[0] * slots))
    for start in range(0, n, chunk):
        i = torch.arange(start, min(n, start + chunk), device=device)
        around = atom_bin[i].unsqueeze(1) + offsets  # (c, o, 3) bins, possibly outside the cell
        image = torch.where(is_periodic, torch.div(around, bins, rounding_mode="floor"), 0)  # the cell's image
        inside = around - image * bins
        valid = ((inside >= 0) & (inside < bins)).all(-1)  # free axes: no bin beyond the atoms
        key = (inside[..., 0] * nb[1] + inside[..., 1]) * nb[2] + inside[..., 2]
        if dense:
            row = torch.where(valid, key, num_rows)
        else:
            where = torch.searchsorted(occupied, key).clamp(max=num_rows - 1)
            row = torch.where(valid & (occupied[where] == key), where, num_rows)
        j = table[row]  # (c, o, slots); -1: an empty slot
        # the occupied slots only (in the padded table's order), their distances component by
        # component: flat gathers and products, no reduction over rows of 3
        c, o, s = (j >= 0).nonzero(as_tuple=True)
        pair = c * offsets.shape[0] + o  # (atom, bin offset) of each candidate
        center, neighbour = i[c], j[c, o, s]
        image_shift = (image.to(dtype) @ box).reshape(-1, 3).t()  # (3, c * o)
        rsq = torch.zeros(center.shape, dtype=dtype, device=device)
        for k in range(3):
            d = axes[k][neighbour] - axes[k][center] + image_shift[k][pair]
            rsq.addcmul_(d, d)
        itself = (neighbour == center) & (image == 0).all(-1).reshape(-1)[pair]
        keep = ((rsq < r_cut_sq) & ~itself).nonzero().squeeze(1)
        center, neighbour, pair = center[keep], neighbour[keep], pair[keep]
        centers.append(center)
        neighbours.append(neighbour)
        # in the caller's (unwrapped) positions: r_ij = pos[j] - pos[i] + (image - image0_j + image0_i) @ box,
        # which is zero along free axes and there equals the same multiple of the caller's cell
        shifts.append((image.reshape(-1, 3)[pair].to(dtype) - image0[neighbour] + image0[center]) @ box)
        lengths.append(rsq[keep].sqrt())
    edge_index = torch.stack([torch.cat(centers), torch.cat(neighbours)])
    return edge_index, torch.cat(shifts), torch.cat(lengths)
