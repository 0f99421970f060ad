"""Species embedding: one-hot node attributes and initial scalar node features."""

import torch
from e3nn import o3
from e3nn.util.jit import compile_mode
from torch import nn

from .species import Keep, grow_paths


@compile_mode("script")
class SpeciesEmbedding(nn.Module):
    """Species indices ``(n,)`` to one-hot attributes ``(n, num_species)`` (irreps
    ``num_species x 0e``) and learned features ``(n, num_features)`` (irreps ``num_features x 0e``)."""

    def __init__(self, num_species: int, num_features: int):
        super().__init__()
        self.num_species = num_species
        self.irreps_attrs = o3.Irreps(f"{num_species}x0e")
        self.irreps_out = o3.Irreps(f"{num_features}x0e")
        self.linear = o3.Linear(self.irreps_attrs, self.irreps_out)

    def attributes(self, species: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return torch.nn.functional.one_hot(species, self.num_species).to(dtype)

    def forward(self, species: torch.Tensor, dtype: torch.dtype):
        attrs = self.attributes(species, dtype)
        return attrs, self.linear(attrs)

    @torch.jit.unused
    def grown_state(self, old: "SpeciesEmbedding", keep: Keep) -> dict:
        """This module's weights for more species, from ``old`` (see :mod:`mlff.nn.species`)."""
        return {"linear.weight": grow_paths(self.linear, old.linear, keep, axis=0)}
