"""Per-species energy shift and a global scale, set by training from data statistics."""

from typing import Optional, Sequence

import torch
from e3nn.util.jit import compile_mode
from torch import nn

from .species import Keep, grow_vector


@compile_mode("script")
class ScaleShift(nn.Module):
    """``E_i = scale * e_i + shift[species_i]`` (eV). Both are buffers: the exported file carries
    them and needs nothing else."""

    def __init__(self, num_species: int, scale: float = 1.0, shifts: Optional[Sequence[float]] = None):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))
        shifts = torch.zeros(num_species) if shifts is None else torch.as_tensor(shifts)
        if shifts.shape != (num_species,):
            raise ValueError(f"expected {num_species} per-species shifts, got {tuple(shifts.shape)}")
        self.register_buffer("shift", shifts.to(torch.get_default_dtype()).clone())

    @torch.jit.unused
    def set(self, scale: float, shifts: Sequence[float]) -> None:
        """Set the scale (eV) and per-species shifts (eV/atom), in the order of the model's species."""
        shifts = torch.as_tensor(shifts, dtype=self.shift.dtype)
        if shifts.shape != self.shift.shape:
            raise ValueError(f"expected {self.shift.shape[0]} shifts, got {tuple(shifts.shape)}")
        self.scale.fill_(float(scale))
        self.shift.copy_(shifts)

    @torch.jit.unused
    def grown_state(self, old: "ScaleShift", keep: Keep) -> dict:
        """The old species' shifts; zero for the new ones (fine-tuning sets them from the data)."""
        return {"shift": grow_vector(self.shift, old.shift, keep)}

    def forward(self, energy: torch.Tensor, species: torch.Tensor) -> torch.Tensor:  # [n]
        return self.scale * energy + self.shift[species]
