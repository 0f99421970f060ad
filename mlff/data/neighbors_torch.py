"""A neighbour list in torch, on whatever device the positions are (for ``MLFFCalculator`` on a GPU,
where the host list was about half of a call at 65 000 atoms; see docs/gpu.md).

A cell list for 3D-periodic cells whose faces are at least three cutoffs apart (:func:`applies`):
atoms are binned in fractional coordinates with at least ``r_cut`` between opposite faces of a bin,
so every pair within ``r_cut`` lies in one of the 27 bins around an atom, and those 27 are distinct.
Each bin's atoms sit in a padded table, and each atom is compared with every slot of its 27 bins, in
chunks of atoms that bound the memory. The result has :func:`mlff.data.neighbors.neighbor_list`'s
contract (full list, Cartesian shifts with ``r_ij = pos[j] - pos[i] + shift``) and the same edges,
in another order (the model sorts them by centre). Other structures (molecules, slabs, cells
smaller than three cutoffs) use the host list: they are small or few-atom cases where it is cheap.
"""

from __future__ import annotations

import itertools

import torch

MAX_CANDIDATES = 1 << 22  # pairs compared at once (about 100 MB of float64 difference vectors)
_OFFSETS = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.int64)  # (27, 3)


def _face_distances(cell: torch.Tensor) -> torch.Tensor:
    volume = torch.linalg.det(cell).abs()
    areas = torch.stack([torch.linalg.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]).norm() for k in range(3)])
    return volume / areas


def applies(cell, pbc, r_cut: float) -> bool:
    """Whether :func:`neighbor_list` handles this structure: periodic along all three lattice
    vectors, each pair of opposite faces at least ``3 * r_cut`` apart."""
    if not all(bool(p) for p in pbc):
        return False
    cell = torch.as_tensor(cell, dtype=torch.float64).reshape(3, 3)
    if not torch.isfinite(cell).all() or torch.linalg.det(cell).abs() < 1e-12:
        return False
    return bool((_face_distances(cell) >= 3.0 * r_cut).all())


def neighbor_list(positions: torch.Tensor, cell: torch.Tensor, r_cut: float,
                  max_candidates: int = MAX_CANDIDATES) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full neighbour list within ``r_cut`` of a 3D-periodic structure (see :func:`applies`), on
    ``positions.device``.

    Parameters
    ----------
    positions : (n, 3) float64, Å (need not be wrapped into the cell)
    cell : (3, 3) float64, lattice vectors as rows, on the same device
    r_cut : cutoff radius, Å

    Returns
    -------
    edge_index : (2, E) int64; edge_shift : (E, 3) float64 (Å); lengths : (E,) float64 (Å)
    """
    device = positions.device
    n = positions.shape[0]
    frac = positions @ torch.linalg.inv(cell)
    image0 = torch.floor(frac)  # each atom's own cell: positions - image0 @ cell lie in the cell
    wrapped = positions - image0 @ cell
    bins = torch.floor(_face_distances(cell) / r_cut).to(torch.int64)  # >= 3 along each axis
    nb = [int(b) for b in bins.tolist()]
    bins = bins.to(device)
    atom_bin = torch.minimum(torch.floor((frac - image0) * bins).to(torch.int64), bins - 1).clamp(min=0)
    linear = (atom_bin[:, 0] * nb[1] + atom_bin[:, 1]) * nb[2] + atom_bin[:, 2]
    order = torch.argsort(linear, stable=True)
    counts = torch.bincount(linear, minlength=nb[0] * nb[1] * nb[2])
    slots = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    table = torch.full((nb[0] * nb[1] * nb[2], slots), -1, dtype=torch.int64, device=device)
    sorted_bins = linear[order]
    table[sorted_bins, torch.arange(n, device=device) - starts[sorted_bins]] = order

    offsets = _OFFSETS.to(device)
    r_cut_sq = r_cut * r_cut
    centers, neighbours, shifts, lengths = [], [], [], []
    chunk = max(1, max_candidates // (27 * slots))
    for start in range(0, n, chunk):
        i = torch.arange(start, min(n, start + chunk), device=device)
        around = atom_bin[i].unsqueeze(1) + offsets  # (c, 27, 3) bins, possibly outside the cell
        image = torch.div(around, bins, rounding_mode="floor")  # -1, 0 or +1 cell along each axis
        inside = around - image * bins
        j = table[(inside[..., 0] * nb[1] + inside[..., 1]) * nb[2] + inside[..., 2]]  # (c, 27, slots)
        image_shift = image.to(positions.dtype) @ cell  # (c, 27, 3)
        vec = (wrapped[j.clamp(min=0)] - wrapped[i].view(-1, 1, 1, 3)) + image_shift.unsqueeze(2)
        rsq = (vec * vec).sum(-1)
        itself = (j == i.view(-1, 1, 1)) & (image == 0).all(-1).unsqueeze(2)
        keep = (j >= 0) & (rsq < r_cut_sq) & ~itself
        c, o, s = keep.nonzero(as_tuple=True)
        center, neighbour = i[c], j[c, o, s]
        centers.append(center)
        neighbours.append(neighbour)
        # in the caller's (unwrapped) positions: r_ij = pos[j] - pos[i] + (image - image0_j + image0_i) @ cell
        shifts.append((image[c, o].to(positions.dtype) - image0[neighbour] + image0[center]) @ cell)
        lengths.append(rsq[c, o, s].sqrt())
    edge_index = torch.stack([torch.cat(centers), torch.cat(neighbours)])
    return edge_index, torch.cat(shifts), torch.cat(lengths)
