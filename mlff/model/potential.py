"""The conservative potential: atomic data in, energy and its derivatives (and optional tensor
outputs) out."""

from typing import Dict, List, Optional, Tuple

import torch
from ase.data import atomic_numbers
from e3nn import o3
from e3nn.util.jit import compile_mode
from torch import nn

from ..data import keys
from ..nn import Interaction, RadialEmbedding, Readout, ScaleShift, SpeciesEmbedding, SphericalHarmonics
from ..nn.grad import edge_gradient_outputs
from ..nn.repulsion import ZBLRepulsion, switch_off_radii
from ..nn.tensor_product import dense_rows
from .config import ModelConfig

DIPOLE_IRREPS = o3.Irreps("1x0e+1x1o")  # per atom: a charge and a (polar) dipole vector


def _head_irreps(config: ModelConfig) -> Dict[str, o3.Irreps]:
    heads = {keys.DIPOLE_KEY: DIPOLE_IRREPS} if config.dipole else {}
    heads.update({name: o3.Irreps(irreps) for name, irreps in config.outputs.items()})
    return heads


def _unreachable(name: str, irreps: o3.Irreps, available: o3.Irreps, config: ModelConfig) -> ValueError:
    missing = sorted({str(ir) for _, ir in irreps} - {str(ir) for _, ir in available})
    if config.l_max == 0:
        why = ("with l_max=0 the model sees interatomic distances only, so it has no directional or "
               "parity-odd features (and cannot tell mirror images apart): use l_max >= 1")
    elif not config.parity and any(ir.p != (-1) ** ir.l for _, ir in irreps):
        why = "parity=False removes pseudo-tensor features: use parity=True"
    else:
        why = "more interaction layers are needed to build them: increase num_layers"
    return ValueError(f"output {name!r} ({irreps}) needs {missing} features, which this model cannot "
                      f"build (its last layer has {available}); {why}")


def _derived(name: str) -> bool:
    """Whether a state-dict entry is a constant derived from the irreps: e3nn's Clebsch-Gordan
    tables (``_w3j_``) and the constants of its generated code (``_tensor_constantN``), which
    TorchScript saves too."""
    return "._w3j_" in name or "._tensor_constant" in name


def _chunk_bounds(center: torch.Tensor, num_rows: int, chunk_atoms: int) -> Tuple[List[int], List[int]]:
    """Atom ranges ``[bounds[c], bounds[c + 1])`` of ``chunk_atoms`` atoms covering ``num_rows``,
    and the ranges of their edges in ``center`` (sorted)."""
    bounds = list(range(0, num_rows, chunk_atoms)) + [num_rows]
    marks = torch.tensor(bounds, dtype=center.dtype, device=center.device)
    edge_bounds: List[int] = torch.searchsorted(center.contiguous(), marks).tolist()
    return bounds, edge_bounds


def _graph_sum(values: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Per-atom ``values`` ``[n, k]`` summed per structure ``[num_graphs, k]``; one structure is a
    plain sum (Inductor's CPU code generation fails on a scatter into a one-row buffer)."""
    if num_graphs == 1:
        return values.sum(0, keepdim=True)
    total = torch.zeros((num_graphs, values.shape[1]), dtype=values.dtype, device=values.device)
    return total.index_add(0, batch, values)


@compile_mode("script")
class Potential(nn.Module):
    """E(3)-equivariant message-passing potential with autograd forces and virials.

    ``forward`` takes an atomic-data dictionary (:mod:`mlff.data.keys`: positions, species,
    edge_index, edge_shift, batch, ptr and optionally n_local, total_charge) and returns energy,
    atomic_energy, forces, virial and atomic_virial (float64), all from one backward pass through
    the energy with respect to the edge vectors; plus the optional heads (dipole, charges, and
    ``config.outputs``), read out from the same features. Use :func:`mlff.build_model`.
    """

    def __init__(self, config: ModelConfig, species: List[str]):
        super().__init__()
        self.config = config
        self.species: List[str] = list(species)
        self.r_cut = float(config.r_cut)
        self.num_layers = int(config.num_layers)
        num_species = len(self.species)
        heads = _head_irreps(config)

        self.embedding = SpeciesEmbedding(num_species, config.features(0))
        self.sh = SphericalHarmonics(config.sh_irreps)
        self.radial = RadialEmbedding(config.r_cut, config.num_basis, config.cutoff_p)
        self.radial_species = bool(config.radial_species)
        self.fused_tp = config.tp_backend == "fused"  # the fused convolution reads a dense edge layout
        radial_inputs = config.num_basis + (2 * num_species if self.radial_species else 0)

        # the last layer computes only what the readouts need: scalars for the energy, plus the
        # irreps of the optional heads
        needed = sorted({o3.Irrep("0e")} | {ir for irreps in heads.values() for _, ir in irreps})
        last_target = o3.Irreps([(config.features(ir.l), ir) for ir in needed])
        layers = []
        irreps = self.embedding.irreps_out
        for index in range(config.num_layers):
            target = last_target if index == config.num_layers - 1 else config.hidden_irreps
            layer = Interaction(
                irreps, config.sh_irreps, target, self.embedding.irreps_attrs,
                radial_inputs, config.radial_hidden, config.radial_layers,
                config.avg_num_neighbors, config.tp_backend,
            )
            if layer.irreps_in != irreps:
                raise ValueError(f"layer {index} expects {layer.irreps_in}, gets {irreps}")
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout = Readout(irreps, o3.Irreps(f"{config.readout_hidden}x0e"), o3.Irreps("1x0e"))
        self.scale_shift = ScaleShift(num_species)
        # the fixed pair repulsion under the learned energy (its tables derive from the species)
        self.pair_repulsion = config.pair_repulsion == "zbl"
        numbers = [atomic_numbers[symbol] for symbol in self.species]
        if not isinstance(config.pair_repulsion_radii, dict):
            raise ValueError(f"pair_repulsion_radii: {config.pair_repulsion_radii!r} is set by training from its "
                             "frames; a model built outside training takes the radii as a mapping such as "
                             "{'C-H': 0.98}, or {} for the covalent-radius sums")
        self.repulsion = ZBLRepulsion(numbers, switch_off_radii(numbers, config.pair_repulsion_radii))

        readouts = {}
        available = {ir for _, ir in irreps}
        for name, out_irreps in heads.items():
            if not {ir for _, ir in out_irreps} <= available:
                raise _unreachable(name, out_irreps, irreps, config)
            hidden = o3.Irreps([(config.readout_hidden, ir)
                                for ir in sorted({o3.Irrep("0e")} | {ir for _, ir in out_irreps})])
            readouts[name] = Readout(irreps, hidden, out_irreps)
        self.heads = nn.ModuleDict(readouts)
        # names of the extra outputs, per structure and per atom (the deploy wrapper returns them)
        self.graph_outputs: List[str] = list(heads)
        self.atom_outputs: List[str] = [keys.CHARGES_KEY, keys.ATOMIC_DIPOLES_KEY] if config.dipole else []
        self.atom_outputs += [keys.ATOMIC_PREFIX + name for name in config.outputs]

    # ---- the model's state, without the constants its constructor derives ------------------------------
    @torch.jit.unused
    def portable_state(self) -> Dict[str, torch.Tensor]:
        """The weights and statistics (energy shifts, scale) that define this model: its state dict
        without the constants the constructor derives from the irreps (Clebsch-Gordan tables,
        e3nn's generated constants), which a rebuilt model computes itself in its own dtype."""
        return {k: v for k, v in self.state_dict().items() if not _derived(k)}

    @classmethod
    def from_state(cls, config: ModelConfig, species: List[str], state: Dict[str, torch.Tensor]) -> "Potential":
        """The model of ``config`` and ``species`` with the weights of ``state`` (a
        :meth:`portable_state` or a full state dict; derived constants in it are not used). A state
        that does not fit the architecture is a ValueError naming the entries."""
        from .builder import build_model

        model = build_model(config, species)
        derived = {name for name, _ in model.named_buffers()} - set(model.state_dict())
        result = model.load_state_dict({k: v for k, v in state.items() if not _derived(k) and k not in derived},
                                       strict=False)
        missing = [k for k in result.missing_keys if not _derived(k)]
        if missing or result.unexpected_keys:
            raise ValueError(f"the weights do not fit the model the config describes (missing {missing}, "
                             f"unexpected {result.unexpected_keys}): rebuild with the config and species the "
                             "weights were trained with")
        return model

    @torch.jit.unused
    def load_grown(self, old: "Potential", keep: List[Tuple[int, int]]) -> None:
        """Load the weights of ``old`` into this model, built for more species (``keep``: pairs of
        (index here, index in ``old``) of the species both know). Each module with a species axis
        grows its own weights (``grown_state``, :mod:`mlff.nn.species`); the rest is copied."""
        old_modules = dict(old.named_modules())
        grown: Dict[str, torch.Tensor] = {}
        for name, module in self.named_modules():
            if hasattr(module, "grown_state"):
                grown.update({f"{name}.{k}": v for k, v in module.grown_state(old_modules[name], keep).items()})
        old_state = old.portable_state()
        state = {}
        for name, target in self.portable_state().items():
            value = grown.get(name, old_state.get(name))
            if value is None or value.shape != target.shape:
                raise ValueError(f"parameter {name} has shape {None if value is None else tuple(value.shape)} in "
                                 f"the model and {tuple(target.shape)} in the copy: the architectures differ")
            state[name] = value
        self.load_state_dict(state, strict=False)

    def forward(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        pos = data[keys.POSITIONS_KEY]
        species = data[keys.SPECIES_KEY]
        chunk_atoms = int(data[keys.CHUNK_ATOMS_KEY]) if keys.CHUNK_ATOMS_KEY in data else 0
        # edges sorted by centre (stable): the convolution sums each centre's contiguous edges
        edge_index, edge_shift = data[keys.EDGE_INDEX_KEY], data[keys.EDGE_SHIFT_KEY]
        center = edge_index[0]
        # in chunks (bounded memory, never compiled), edges that come sorted (the device neighbour list's)
        # are not copied
        if chunk_atoms <= 0 or not bool((center[1:] >= center[:-1]).all()):
            order = torch.argsort(center, stable=True)
            edge_index = edge_index.index_select(1, order)
            edge_shift = edge_shift.index_select(0, order)
        batch = data[keys.BATCH_KEY]
        num_atoms = pos.shape[0]
        num_graphs = data[keys.PTR_KEY].shape[0] - 1

        edge_vec = pos[edge_index[1]] - pos[edge_index[0]] + edge_shift
        if not edge_vec.requires_grad:
            edge_vec.requires_grad_(True)
        chunked = chunk_atoms > 0 and edge_index.shape[1] > 0
        if chunked:  # no graph of the edge embedding either: the backward recomputes it chunk by chunk
            with torch.no_grad():
                edge_sh, edge_radial = self.edge_embedding(edge_vec, edge_index, species)
        else:
            edge_sh, edge_radial = self.edge_embedding(edge_vec, edge_index, species)

        is_local = torch.ones(num_atoms, dtype=torch.bool, device=pos.device)
        center_hops: Optional[torch.Tensor] = None
        if keys.NUM_LOCAL_KEY in data:  # without it, all atoms are local
            is_local = torch.arange(num_atoms, device=pos.device) < data[keys.NUM_LOCAL_KEY]
            center_hops = self._center_hops(edge_index, is_local)

        if chunked:
            if self.training:
                raise RuntimeError("mlff: chunk_atoms is for inference (it recomputes layers in the backward); "
                                   "train without it")
            x, atomic_energy, energy, edge_grad = self._chunked(species, edge_index, edge_vec, edge_sh, edge_radial,
                                                                is_local, center_hops, batch, num_graphs, chunk_atoms)
            return self._outputs(data, x, atomic_energy, energy, edge_grad, edge_vec, edge_index, batch, is_local,
                                 num_atoms, num_graphs)

        layout: Optional[Tuple[torch.Tensor, torch.Tensor, int]] = None
        if keys.DENSE_ROWS_KEY in data and center_hops is None:  # edges given sorted, with their layout
            layout = (data[keys.DENSE_ROWS_KEY], data[keys.DENSE_SLOT_KEY], data[keys.DENSE_WIDTH_KEY].shape[0])
        elif center_hops is None and self.fused_tp:  # every layer convolves the same edges: one layout for all
            layout = dense_rows(edge_index[0], num_atoms)

        attrs, x = self.embed(species)
        for index in range(self.num_layers):
            if center_hops is None:
                x = self.interaction(index, x, attrs, edge_index, edge_sh, edge_radial, layout=layout)
            else:  # with ghosts, layer k only needs edges centred within (num_layers - 1 - k) hops
                keep = self._layer_edges(center_hops, index)
                x = self.interaction(index, x, attrs, edge_index[:, keep], edge_sh[keep], edge_radial[keep])
        atomic_energy = self.atomic_energy(x, species).to(pos.dtype)
        if self.pair_repulsion:
            atomic_energy = atomic_energy + self.pair_energy(edge_vec, edge_index, species, num_atoms)
        atomic_energy = torch.where(is_local, atomic_energy, torch.zeros_like(atomic_energy))
        energy = _graph_sum(atomic_energy.unsqueeze(-1), batch, num_graphs).squeeze(-1)

        edge_grad: Optional[torch.Tensor] = None
        if energy.requires_grad:  # not without edges (isolated atoms) in a frozen model
            grads = torch.autograd.grad(
                [energy.sum()], [edge_vec], create_graph=self.training, allow_unused=True
            )
            edge_grad = grads[0]
        return self._outputs(data, x, atomic_energy, energy, edge_grad, edge_vec, edge_index, batch, is_local,
                             num_atoms, num_graphs)

    def _outputs(self, data: Dict[str, torch.Tensor], x: torch.Tensor, atomic_energy: torch.Tensor,
                 energy: torch.Tensor, edge_grad: Optional[torch.Tensor], edge_vec: torch.Tensor,
                 edge_index: torch.Tensor, batch: torch.Tensor, is_local: torch.Tensor, num_atoms: int,
                 num_graphs: int) -> Dict[str, torch.Tensor]:
        """The output dictionary from the last layer's features, the energies and dE/dr per edge."""
        pos = data[keys.POSITIONS_KEY]
        if edge_grad is None:  # no edges, or no dependence on them
            edge_grad = torch.zeros_like(edge_vec)
        if not self.training:  # no graph of the virials through the edge vectors (9 float64 per edge, twice)
            edge_vec = edge_vec.detach()
        forces, virial, atomic_virial = edge_gradient_outputs(
            edge_grad, edge_vec, edge_index, batch[edge_index[0]], num_atoms, num_graphs
        )
        out = {
            keys.ENERGY_KEY: energy,
            keys.ATOMIC_ENERGY_KEY: atomic_energy,
            keys.FORCES_KEY: forces,
            keys.VIRIAL_KEY: virial,
            keys.ATOMIC_VIRIAL_KEY: atomic_virial,
        }
        local = is_local.to(pos.dtype).unsqueeze(-1)
        for name, head in self.heads.items():
            atomic = head(x).to(pos.dtype) * local  # [n, dim]; ghosts contribute nothing
            if name == keys.DIPOLE_KEY:
                charges = self._charges(atomic[:, 0], data, batch, is_local, num_graphs)
                dipoles = atomic[:, 1:4]
                out[keys.CHARGES_KEY] = charges
                out[keys.ATOMIC_DIPOLES_KEY] = dipoles
                atomic = charges.unsqueeze(-1) * pos + dipoles  # each atom's share of the dipole
            else:
                out[keys.ATOMIC_PREFIX + name] = atomic
            out[name] = _graph_sum(atomic, batch, num_graphs)
        return out

    def _chunked(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                 edge_sh: torch.Tensor, edge_radial: torch.Tensor, is_local: torch.Tensor,
                 center_hops: Optional[torch.Tensor], batch: torch.Tensor, num_graphs: int, chunk_atoms: int):
        """``forward``'s layers with bounded memory: each layer but the last runs chunk by chunk
        of ``chunk_atoms`` centre atoms with no autograd graph, keeping only its output features;
        the last layer and the readout take each chunk's gradient right after its forward
        (:meth:`last_layer_chunked`); the backward then recomputes one layer's chunk at a time
        (:meth:`layer_backward_chunked`) and accumulates dE/d(spherical harmonics, radial inputs)
        per edge, which one last gradient through the edge embedding turns into dE/dr. The same
        sums as ``forward``, so the same results to rounding; about one more forward pass of the
        layers but the last in time.

        Returns the last layer's features, the atomic energies, the energies per structure and dE/dr
        per edge."""
        num_atoms = species.shape[0]
        attrs, x = self.embed(species)
        sh, radial = edge_sh.detach(), edge_radial.detach()
        # each layer's edges (with ghosts, layer k needs centres within num_layers - 1 - k hops)
        selections: List[Optional[torch.Tensor]] = []
        layer_edges: List[torch.Tensor] = []
        layer_sh: List[torch.Tensor] = []
        layer_radial: List[torch.Tensor] = []
        for index in range(self.num_layers):
            selection: Optional[torch.Tensor] = None
            if center_hops is not None:
                selection = torch.nonzero(self._layer_edges(center_hops, index)).squeeze(1)
            selections.append(selection)
            if selection is None:
                layer_edges.append(edge_index)
                layer_sh.append(sh)
                layer_radial.append(radial)
            else:
                layer_edges.append(edge_index.index_select(1, selection))
                layer_sh.append(sh.index_select(0, selection))
                layer_radial.append(radial.index_select(0, selection))

        inputs: List[torch.Tensor] = [x]
        for index in range(self.num_layers - 1):
            inputs.append(self.layer_forward_chunked(index, inputs[index], attrs, layer_edges[index], layer_sh[index],
                                                     layer_radial[index], num_atoms, chunk_atoms))
        grad_sh = torch.zeros_like(sh)
        grad_radial = torch.zeros_like(radial)
        # the last layer and the readout chunk by chunk, each chunk's backward right after its forward
        index = self.num_layers - 1
        selection = selections[index]
        last, atomic_energy, (grad, g_sh, g_radial) = self.last_layer_chunked(
            inputs[index], attrs, species, is_local, layer_edges[index], layer_sh[index], layer_radial[index],
            num_atoms, chunk_atoms, edge_vec.dtype, grad_sh if selection is None else None,
            grad_radial if selection is None else None, True)
        inputs.append(last)
        if selection is not None:
            grad_sh.index_add_(0, selection, g_sh)
            grad_radial.index_add_(0, selection, g_radial)
        for index in range(self.num_layers - 2, -1, -1):
            selection = selections[index]
            # all the edges: the layer adds its gradients straight into the model's (no per-layer copy)
            grad_x, g_sh, g_radial = self.layer_backward_chunked(
                index, inputs[index], attrs, layer_edges[index], layer_sh[index], layer_radial[index], num_atoms,
                chunk_atoms, grad, index > 0, grad_sh if selection is None else None,
                grad_radial if selection is None else None)
            if selection is not None:
                grad_sh.index_add_(0, selection, g_sh)
                grad_radial.index_add_(0, selection, g_radial)
            if grad_x is not None:
                grad = grad_x
        # the energy counts the pair shares of edges centred on local atoms
        grad_pair = is_local.to(grad_radial.dtype)[edge_index[0]] if self.pair_repulsion else None
        _, edge_bounds = _chunk_bounds(edge_index[0], num_atoms, chunk_atoms)
        edge_grad = self.edge_embedding_backward(edge_vec, edge_index, species, grad_sh, grad_radial, grad_pair,
                                                 edge_bounds)
        if self.pair_repulsion:  # its energy here, its gradient in edge_embedding_backward
            with torch.no_grad():
                pair = self.pair_energy(edge_vec, edge_index, species, num_atoms)
            atomic_energy = atomic_energy.detach() + torch.where(is_local, pair, torch.zeros_like(pair))
        energy = _graph_sum(atomic_energy.detach().unsqueeze(-1), batch, num_graphs).squeeze(-1)
        return inputs[self.num_layers], atomic_energy.detach(), energy, edge_grad

    def last_layer_chunked(self, x: torch.Tensor, attrs: torch.Tensor, species: torch.Tensor, is_local: torch.Tensor,
                           edge_index: torch.Tensor, edge_sh: torch.Tensor, edge_radial: torch.Tensor,
                           num_centres: int, chunk_atoms: int, dtype: torch.dtype,
                           grad_sh_into: Optional[torch.Tensor], grad_radial_into: Optional[torch.Tensor],
                           keep_features: bool):
        """The last layer and the readout on the first ``num_centres`` atoms of ``x`` (the centres
        of ``edge_index``), ``chunk_atoms`` atoms at a time, each chunk's gradient taken right after
        its forward: the readout is per atom, so a chunk's energies depend on its own rows only, and
        this layer needs no forward without a graph and no recomputation. ``is_local``
        ``(num_centres,)``: whose energies count. Returns the layer's features ``(num_centres, F)``
        (no rows unless ``keep_features``), the energies ``(num_centres,)`` in ``dtype`` and the
        gradients of their sum (w.r.t. ``x`` (empty for a one-layer model), the harmonics, the
        radial inputs, added to ``grad_*_into`` where given)."""
        index = self.num_layers - 1
        need_x = index > 0
        bounds, edge_bounds = _chunk_bounds(edge_index[0], num_centres, chunk_atoms)
        grad_sh = torch.zeros_like(edge_sh) if grad_sh_into is None else grad_sh_into
        grad_radial = torch.zeros_like(edge_radial) if grad_radial_into is None else grad_radial_into
        grad_x = torch.zeros_like(x) if need_x else x.new_zeros(0)  # (a one-layer model's input needs none)
        atomic_energy = torch.zeros(num_centres, dtype=dtype, device=x.device)
        y = x.new_zeros((num_centres, 0))
        for i, layer in enumerate(self.layers):
            if i == index:
                y = x.new_empty((num_centres if keep_features else 0, layer.out_dim))
                for c in range(len(bounds) - 1):
                    a0, a1, e0, e1 = bounds[c], bounds[c + 1], edge_bounds[c], edge_bounds[c + 1]
                    out, leaves, nodes = layer.chunk_graph(x, attrs, edge_sh, edge_radial, edge_index[0], edge_index[1],
                                                           a0, a1, e0, e1, need_x)
                    energy = self.atomic_energy(out, species[a0:a1]).to(dtype)
                    energy = torch.where(is_local[a0:a1], energy, torch.zeros_like(energy))
                    if keep_features:
                        y[a0:a1] = out.detach()
                    atomic_energy[a0:a1] = energy.detach()
                    if energy.requires_grad:  # not for a chunk without edges in a one-layer model
                        grads = torch.autograd.grad([energy.sum()], leaves, allow_unused=True)
                        layer.add_chunk_gradients(grads, nodes, a0, a1, e0, e1, grad_x, grad_sh, grad_radial)
        return y, atomic_energy, (grad_x, grad_sh, grad_radial)

    def edge_embedding_backward(self, edge_vec: torch.Tensor, edge_index: torch.Tensor, species: torch.Tensor,
                                grad_sh: torch.Tensor, grad_radial: torch.Tensor, grad_pair: Optional[torch.Tensor],
                                edge_bounds: List[int]) -> torch.Tensor:
        """dE/dr per edge ``(E, 3)`` from the gradients of :meth:`edge_embedding`'s outputs (and,
        with the pair repulsion, of each edge's :meth:`pair_edge_energy`, ``grad_pair``), recomputing
        the embedding one block of edges ``[edge_bounds[c], edge_bounds[c + 1])`` at a time: for
        callers that computed it without an autograd graph (bounded memory)."""
        edge_grad = torch.zeros_like(edge_vec.detach())
        for c in range(len(edge_bounds) - 1):
            e0, e1 = edge_bounds[c], edge_bounds[c + 1]
            if e1 == e0:
                continue
            vec = edge_vec[e0:e1].detach().requires_grad_(True)
            sh, radial = self.edge_embedding(vec, edge_index[:, e0:e1], species)
            outputs: List[torch.Tensor] = []
            seeds: List[Optional[torch.Tensor]] = []
            if sh.requires_grad:  # not with l_max 0 (constant harmonics)
                outputs.append(sh)
                seeds.append(grad_sh[e0:e1].to(sh.dtype))
            if radial.requires_grad:
                outputs.append(radial)
                seeds.append(grad_radial[e0:e1].to(radial.dtype))
            if grad_pair is not None:
                share = self.pair_edge_energy(vec, edge_index[:, e0:e1], species)
                outputs.append(share)
                seeds.append(grad_pair[e0:e1].to(share.dtype))
            if len(outputs) > 0:
                grad = torch.autograd.grad(outputs, [vec], seeds, allow_unused=True)[0]
                if grad is not None:
                    edge_grad[e0:e1] = grad
        return edge_grad

    def layer_forward_chunked(self, index: int, x: torch.Tensor, attrs: torch.Tensor, edge_index: torch.Tensor,
                              edge_sh: torch.Tensor, edge_radial: torch.Tensor, n_out: int,
                              chunk_atoms: int) -> torch.Tensor:
        """Layer ``index``'s new features of the first ``n_out`` atoms (their edges only, sorted
        by centre), ``chunk_atoms`` centres at a time, with no autograd graph."""
        bounds, edge_bounds = _chunk_bounds(edge_index[0], n_out, chunk_atoms)
        out = x
        for i, layer in enumerate(self.layers):
            if i == index:
                out = layer.chunked_forward(x, attrs, edge_sh.detach(), edge_radial.detach(), edge_index[0],
                                            edge_index[1], bounds, edge_bounds)
        return out

    def layer_backward_chunked(self, index: int, x: torch.Tensor, attrs: torch.Tensor, edge_index: torch.Tensor,
                               edge_sh: torch.Tensor, edge_radial: torch.Tensor, n_out: int, chunk_atoms: int,
                               grad_out: torch.Tensor, need_x: bool, grad_sh_into: Optional[torch.Tensor] = None,
                               grad_radial_into: Optional[torch.Tensor] = None
                               ) -> Tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The backward of :meth:`layer_forward_chunked` for the output gradient ``grad_out``
        ``(n_out, F)``, recomputing one chunk at a time: gradients w.r.t. ``x`` (all atoms; None
        unless ``need_x``), the edges' spherical harmonics and radial inputs (added to
        ``grad_sh_into`` and ``grad_radial_into`` where given)."""
        bounds, edge_bounds = _chunk_bounds(edge_index[0], n_out, chunk_atoms)
        none = edge_sh.new_zeros(0)  # placeholders for TorchScript's types: every call sets the result
        result: Tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor] = (None, none, none)
        for i, layer in enumerate(self.layers):
            if i == index:
                result = layer.chunked_backward(x, attrs, edge_sh, edge_radial, edge_index[0], edge_index[1], bounds,
                                                edge_bounds, grad_out, need_x, grad_sh_into, grad_radial_into)
        return result

    # The steps of ``forward``, also called one by one by engines that exchange the features of
    # ghost atoms between layers (the LAMMPS plugin through the model file's halo_* methods (mlff.modelfile.halo)).

    def embed(self, species: torch.Tensor):
        """Species ``(n,)`` -> one-hot attributes and the first layer's features (model dtype)."""
        return self.embedding(species, self.scale_shift.shift.dtype)

    def attributes(self, species: torch.Tensor) -> torch.Tensor:
        """Species ``(n,)`` -> one-hot attributes (model dtype), without the first layer's features."""
        return self.embedding.attributes(species, self.scale_shift.shift.dtype)

    def edge_embedding(self, edge_vec: torch.Tensor, edge_index: torch.Tensor, species: torch.Tensor):
        """Edge vectors ``(E, 3)`` -> spherical harmonics ``(E, sh)`` and the radial MLP's input
        ``(E, num_basis [+ 2 num_species])``: the radial basis, and with ``radial_species`` the
        one-hot species of the edge's centre and neighbour, all times the cutoff envelope."""
        vec = edge_vec.to(self.scale_shift.shift.dtype)
        length = torch.linalg.norm(vec, dim=1)
        envelope = self.radial.cutoff(length).unsqueeze(-1)
        radial = self.radial.basis(length) * envelope
        if self.radial_species:
            attrs = self.attributes(species)
            radial = torch.cat([radial, attrs[edge_index[0]] * envelope, attrs[edge_index[1]] * envelope], dim=1)
        return self.sh(vec), radial

    def interaction(self, index: int, x: torch.Tensor, attrs: torch.Tensor, edge_index: torch.Tensor,
                    edge_sh: torch.Tensor, edge_radial: torch.Tensor, n_out: int = -1,
                    layout: Optional[Tuple[torch.Tensor, torch.Tensor, int]] = None) -> torch.Tensor:
        """Interaction layer ``index``: new features of the first ``n_out`` atoms (all if < 0)
        from the edges centred on them (sorted by centre; ``layout`` as in :class:`Interaction`)."""
        if index < 0 or index >= self.num_layers:
            raise ValueError("mlff: interaction layer index out of range")
        out = x
        for i, layer in enumerate(self.layers):
            if i == index:
                out = layer(x, attrs, edge_index, edge_sh, edge_radial, n_out, layout)
        return out

    def atomic_energy(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Last-layer features ``(n, F)`` -> per-atom energies ``(n,)`` (eV, model dtype)."""
        return self.scale_shift(self.readout(x).squeeze(-1), species)

    def pair_edge_energy(self, edge_vec: torch.Tensor, edge_index: torch.Tensor,
                         species: torch.Tensor) -> torch.Tensor:
        """Each edge's share of the fixed pair repulsion ``(E,)`` (eV, model dtype): half the
        pair's ZBL energy, since a pair appears as two edges, one centred on each atom."""
        length = torch.linalg.norm(edge_vec.to(self.scale_shift.shift.dtype), dim=1)
        return 0.5 * self.repulsion(length, species[edge_index[0]], species[edge_index[1]])

    def pair_energy(self, edge_vec: torch.Tensor, edge_index: torch.Tensor, species: torch.Tensor,
                    num_atoms: int) -> torch.Tensor:
        """Per-atom energies ``(num_atoms,)`` of the fixed pair repulsion (eV, the dtype of
        ``edge_vec``): the shares of the edges centred on each atom."""
        shares = self.pair_edge_energy(edge_vec, edge_index, species)
        total = torch.zeros(num_atoms, dtype=shares.dtype, device=shares.device)
        return total.index_add(0, edge_index[0], shares).to(edge_vec.dtype)

    def _layer_edges(self, center_hops: torch.Tensor, index: int) -> torch.Tensor:
        """The edges layer ``index`` needs when there are ghosts (bool per edge): those centred
        within ``num_layers - 1 - index`` hops of a local atom (see :meth:`_center_hops`)."""
        return center_hops <= self.num_layers - 1 - index

    def _center_hops(self, edge_index: torch.Tensor, is_local: torch.Tensor) -> Optional[torch.Tensor]:
        """Graph distance (hops) of each edge's center from the local atoms, or None without ghosts.

        Message passing over ``num_layers`` layers is exact if layer ``k`` (from 0) uses the edges
        whose center is within ``num_layers - 1 - k`` hops of a local atom: the last layer needs
        local centers only. Engines with ghost atoms (LAMMPS) save the rest."""
        if bool(is_local.all()):
            return None
        far = self.num_layers + 1
        hops = torch.where(is_local, 0, far).to(torch.int64)
        for level in range(1, self.num_layers):
            reached = edge_index[1][hops[edge_index[0]] == level - 1]
            hops = hops.scatter_reduce(0, reached, torch.full_like(reached, level), reduce="amin")
        return hops[edge_index[0]]

    def _charges(self, raw: torch.Tensor, data: Dict[str, torch.Tensor], batch: torch.Tensor,
                 is_local: torch.Tensor, num_graphs: int):
        """Per-atom charges [n], shifted equally within each structure so that they sum to its
        total charge (0 unless ``total_charge`` is given)."""
        local = is_local.to(raw.dtype)
        total = torch.zeros(num_graphs, dtype=raw.dtype, device=raw.device)
        if keys.TOTAL_CHARGE_KEY in data:
            total = data[keys.TOTAL_CHARGE_KEY].to(raw.dtype)
        count = torch.zeros(num_graphs, dtype=raw.dtype, device=raw.device).index_add(0, batch, local)
        excess = torch.zeros(num_graphs, dtype=raw.dtype, device=raw.device).index_add(0, batch, raw * local)
        return (raw + ((total - excess) / count.clamp(min=1.0))[batch]) * local


def with_edge_layout(data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``data`` with its edges sorted by centre (stable, as :meth:`Potential.forward` sorts them) and
    their dense per-centre layout (``dense_rows``, ``dense_slot``, ``dense_width``; see
    :func:`~mlff.nn.tensor_product.dense_rows`): the inputs a compiled graph needs, since it
    cannot derive shapes from values."""
    out = dict(data)
    order = torch.argsort(data[keys.EDGE_INDEX_KEY][0], stable=True)
    out[keys.EDGE_INDEX_KEY] = data[keys.EDGE_INDEX_KEY].index_select(1, order)
    out[keys.EDGE_SHIFT_KEY] = data[keys.EDGE_SHIFT_KEY].index_select(0, order)
    rows, slot, width = dense_rows(out[keys.EDGE_INDEX_KEY][0], data[keys.POSITIONS_KEY].shape[0])
    out[keys.DENSE_ROWS_KEY], out[keys.DENSE_SLOT_KEY] = rows, slot
    out[keys.DENSE_WIDTH_KEY] = torch.empty(width, dtype=torch.int8, device=rows.device)  # only its length is read
    return out
