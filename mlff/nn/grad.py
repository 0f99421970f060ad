"""Forces, virials and per-atom virials from one gradient of the energy w.r.t. the edge vectors.

With ``r_ij = pos[j] - pos[i] + shift_ij`` and ``g_ij = dE/dr_ij``:

* ``dE/dpos_k = sum_{edges with j=k} g_ij - sum_{edges with i=k} g_ij``, so forces
  ``F = -dE/dpos`` are a scatter of ``g`` onto both atoms of each edge;
* the virial is ``W = -sum_ij r_ij (x) g_ij`` (eV, LAMMPS convention, positive under compression),
  the strain derivative of the energy: ``stress = -W / V`` in ASE's convention;
* each edge's virial is shared half and half between its two atoms (per-atom virial).

Ghost atoms (``i >= n_local``) receive forces and virial shares like any other atom, so an engine
can send them back to the atoms they are images of.
"""

from typing import Tuple

import torch


def edge_gradient_outputs(
    edge_grad: torch.Tensor,  # [E, 3] dE/dr_ij
    edge_vec: torch.Tensor,  # [E, 3] r_ij
    edge_index: torch.Tensor,  # [2, E]
    edge_graph: torch.Tensor,  # [E] graph index of each edge
    num_atoms: int,
    num_graphs: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns forces ``[n, 3]``, virial ``[G, 3, 3]`` and per-atom virial ``[n, 3, 3]``."""
    center, neighbour = edge_index[0], edge_index[1]
    forces = torch.zeros((num_atoms, 3), dtype=edge_grad.dtype, device=edge_grad.device)
    forces.index_add_(0, center, edge_grad)
    forces.index_add_(0, neighbour, -edge_grad)

    half_virial = -0.5 * edge_vec.unsqueeze(-1) * edge_grad.unsqueeze(-2)  # [E, 3, 3]: each atom's share
    if num_graphs == 1:  # one contraction instead of a scatter of E 3x3 blocks into one row
        virial = -(edge_vec.t() @ edge_grad).unsqueeze(0)
    else:
        virial = torch.zeros((num_graphs, 3, 3), dtype=edge_grad.dtype, device=edge_grad.device)
        virial.index_add_(0, edge_graph, half_virial)
        virial = 2.0 * virial
    atomic_virial = torch.zeros((num_atoms, 3, 3), dtype=edge_grad.dtype, device=edge_grad.device)
    atomic_virial.index_add_(0, center, half_virial)
    atomic_virial.index_add_(0, neighbour, half_virial)
    return forces, virial, atomic_virial
