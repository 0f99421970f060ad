"""The checks of the engine contract's inputs, shared by the scripted model (``export.py``) and
its compiled copy (``compiled.py``): bad input is a ValueError naming the problem, never an
out-of-bounds read in a compiled kernel."""

import torch


def check_engine_inputs(positions: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor,
                        species: torch.Tensor, n_local: int, num_species: int) -> None:
    """Shapes, ``n_local`` and the ranges of ``species`` and ``edge_index`` (TorchScript-able)."""
    n = positions.shape[0]
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError("mlff: positions must have shape (n, 3)")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError("mlff: edge_index must have shape (2, E)")
    if edge_shift.dim() != 2 or edge_shift.shape[0] != edge_index.shape[1] or edge_shift.shape[1] != 3:
        raise ValueError("mlff: edge_shift must have shape (E, 3), one row per edge")
    if species.dim() != 1 or species.shape[0] != n:
        raise ValueError("mlff: species must have one entry per atom")
    if n_local < 0 or n_local > n:
        raise ValueError("mlff: n_local must lie in [0, number of atoms]")
    if n > 0 and (int(species.min()) < 0 or int(species.max()) >= num_species):
        raise ValueError("mlff: species index out of range for this model")
    if edge_index.numel() > 0 and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        raise ValueError("mlff: edge_index refers to atoms outside [0, number of atoms)")
