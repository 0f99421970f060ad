"""The conservative potential: atomic data in, energy and its derivatives out."""

from typing import Dict, List

import torch
from e3nn import o3
from e3nn.util.jit import compile_mode
from torch import nn

from ..data import keys
from ..nn import Interaction, RadialEmbedding, Readout, ScaleShift, SpeciesEmbedding
from ..nn.grad import edge_gradient_outputs
from .config import ModelConfig


@compile_mode("script")
class Potential(nn.Module):
    """E(3)-equivariant message-passing potential with autograd forces and virials.

    ``forward`` takes an atomic-data dictionary (:mod:`mlff.data.keys`: positions, species,
    edge_index, edge_shift, batch, ptr and optionally n_local) and returns energy, atomic_energy,
    forces, virial and atomic_virial (float64), all from one backward pass through the energy with
    respect to the edge vectors. Use :func:`mlff.build_model` to construct it.
    """

    def __init__(self, config: ModelConfig, species: List[str]):
        super().__init__()
        self.config = config
        self.species: List[str] = list(species)
        self.r_cut = float(config.r_cut)
        self.num_layers = int(config.num_layers)
        num_species = len(self.species)

        self.embedding = SpeciesEmbedding(num_species, config.num_features)
        self.sh = o3.SphericalHarmonics(config.sh_irreps, normalize=True, normalization="component")
        self.radial = RadialEmbedding(config.r_cut, config.num_basis, config.cutoff_p)

        layers = []
        irreps = self.embedding.irreps_out
        for index in range(config.num_layers):
            last = index == config.num_layers - 1
            # the energy head reads scalars only, so the last layer computes nothing else
            target = o3.Irreps(f"{config.num_features}x0e") if last else config.hidden_irreps
            layer = Interaction(
                irreps, config.sh_irreps, target, self.embedding.irreps_attrs,
                config.num_basis, config.radial_hidden, config.radial_layers,
                config.avg_num_neighbors,
            )
            if layer.irreps_in != irreps:
                raise ValueError(f"layer {index} expects {layer.irreps_in}, gets {irreps}")
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout = Readout(irreps, o3.Irreps(f"{config.readout_hidden}x0e"), o3.Irreps("1x0e"))
        self.scale_shift = ScaleShift(num_species)

    def forward(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        pos = data[keys.POSITIONS_KEY]
        species = data[keys.SPECIES_KEY]
        edge_index = data[keys.EDGE_INDEX_KEY]
        batch = data[keys.BATCH_KEY]
        num_atoms = pos.shape[0]
        num_graphs = data[keys.PTR_KEY].shape[0] - 1
        dtype = self.scale_shift.shift.dtype

        edge_vec = pos[edge_index[1]] - pos[edge_index[0]] + data[keys.EDGE_SHIFT_KEY]
        if not edge_vec.requires_grad:
            edge_vec.requires_grad_(True)
        vec = edge_vec.to(dtype)
        edge_sh = self.sh(vec)
        edge_radial = self.radial(torch.linalg.norm(vec, dim=1))

        attrs, x = self.embedding(species, dtype)
        for layer in self.layers:
            x = layer(x, attrs, edge_index, edge_sh, edge_radial)
        atomic_energy = self.scale_shift(self.readout(x).squeeze(-1), species).to(pos.dtype)
        if keys.NUM_LOCAL_KEY in data:
            is_local = torch.arange(num_atoms, device=pos.device) < data[keys.NUM_LOCAL_KEY]
            atomic_energy = torch.where(is_local, atomic_energy, torch.zeros_like(atomic_energy))
        energy = torch.zeros(num_graphs, dtype=pos.dtype, device=pos.device)
        energy = energy.index_add(0, batch, atomic_energy)

        grads = torch.autograd.grad(
            [energy.sum()], [edge_vec], create_graph=self.training, allow_unused=True
        )
        edge_grad = grads[0]
        if edge_grad is None:  # no edges, or no dependence on them
            edge_grad = torch.zeros_like(edge_vec)
        forces, virial, atomic_virial = edge_gradient_outputs(
            edge_grad, edge_vec, edge_index, batch[edge_index[0]], num_atoms, num_graphs
        )
        return {
            keys.ENERGY_KEY: energy,
            keys.ATOMIC_ENERGY_KEY: atomic_energy,
            keys.FORCES_KEY: forces,
            keys.VIRIAL_KEY: virial,
            keys.ATOMIC_VIRIAL_KEY: atomic_virial,
        }
