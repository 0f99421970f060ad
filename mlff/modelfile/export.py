"""``deploy``: write a trained potential as one self-describing TorchScript file.

The scripted ``forward`` is the single contract shared by the ASE calculator, the LAMMPS plugin
and Python (see ``docs/model-file.md``)::

    forward(positions: (n, 3) float64, edge_index: (2, E) int64, edge_shift: (E, 3) float64,
            species: (n,) int64, n_local: int, total_charge: float = 0.0) -> Dict[str, Tensor]

returning float64 ``energy`` (), ``atomic_energy`` (n,), ``forces`` (n, 3), ``virial`` (3, 3) and
``atomic_virial`` (n, 3, 3), plus the optional heads (``dipole`` (3,), ``charges`` (n,), and each
``outputs`` name with its per-atom ``atomic_<name>``). Metadata is stored as plain-text
``_extra_files`` entries.

``forward_chunked(..., n_local, chunk_atoms, total_charge=0.0)`` returns the same with peak memory
bounded by ``chunk_atoms`` atoms (each layer recomputed chunk by chunk for the forces).

Engines that own only some atoms and exchange the features of ghost atoms between layers (the
LAMMPS plugin across MPI ranks) call the ``halo_*`` methods instead, one layer at a time; see
:mod:`mlff.modelfile.halo` for the protocol and a reference driver.
"""


import copy
import json
import os
from typing import Dict, List, Optional, Tuple

import e3nn
import torch
from e3nn.util.jit import compile_mode, script
from torch import nn

from .. import __version__
from ..data import keys
from ..model import Potential
from ..nn.grad import edge_gradient_outputs
from .contract import check_engine_inputs
from .format import FORMAT_VERSION, torchscript_quiet
from .sources import sources_read_once

# what every file written by this version can run (the `capabilities` entry): the whole-structure
# `forward` contract, the layer-by-layer halo_* methods (mlff.modelfile.halo), and
# `forward_chunked` (forward with peak memory bounded by a chunk of atoms), halo_edge_gradients and
# halo_last_layer_chunked (what a chunked engine calls to keep no edge graph / run the last layer once)
CAPABILITIES = ("forward", "halo_exchange", "chunked", "edge_gradients", "last_layer_chunked")
UNITS = {"energy_unit": "eV", "length_unit": "Angstrom"}


@compile_mode("script")
class DeployedPotential(nn.Module):
    """The scripted engine contract around a :class:`~mlff.model.Potential` (one structure)."""

    graph_outputs: List[str]  # extra per-structure outputs (dipole, config.outputs)
    atom_outputs: List[str]  # their per-atom values (charges, atomic_<name>)

    def __init__(self, potential: Potential):
        super().__init__()
        self.potential = potential
        self.num_species = len(potential.species)
        self.graph_outputs: List[str] = list(potential.graph_outputs)
        self.atom_outputs: List[str] = list(potential.atom_outputs)
        self.num_layers = int(potential.num_layers)
        # width of the features exchanged between layers (the outputs of all but the last layer)
        self.feature_dim = max([layer.irreps_out.dim for layer in potential.layers][:-1], default=0)
        # with the fixed pair repulsion, the halo protocol carries it inside the tensors the engine
        # already passes around: one more column of the edges' radial input (each edge's share of
        # the pair energy) and one more column of the last layer's output (each atom's sum), which
        # halo_energy adds to the learned energy; the engine sees only wider tensors
        self.pair_repulsion = bool(potential.pair_repulsion)
        self.last_dim = int(potential.layers[-1].irreps_out.dim)

    def forward(
        self,
        positions: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        species: torch.Tensor,
        n_local: int,
        total_charge: float = 0.0,
    ) -> Dict[str, torch.Tensor]:
        return self.evaluate(positions, edge_index, edge_shift, species, n_local, total_charge, 0)

    @torch.jit.export
    def forward_chunked(
        self,
        positions: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        species: torch.Tensor,
        n_local: int,
        chunk_atoms: int,
        total_charge: float = 0.0,
    ) -> Dict[str, torch.Tensor]:
        """``forward`` with peak memory bounded by ``chunk_atoms`` atoms' autograd graph: each
        layer runs in chunks of atoms and is recomputed chunk by chunk for the forces (about one
        more forward pass of the layers). The same outputs to rounding."""
        if chunk_atoms < 1:
            raise ValueError("mlff: chunk_atoms must be a positive number of atoms")
        return self.evaluate(positions, edge_index, edge_shift, species, n_local, total_charge, chunk_atoms)

    def evaluate(
        self,
        positions: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        species: torch.Tensor,
        n_local: int,
        total_charge: float,
        chunk_atoms: int,
    ) -> Dict[str, torch.Tensor]:
        n = positions.shape[0]
        check_engine_inputs(positions, edge_index, edge_shift, species, n_local, self.num_species)
        data = {
            keys.POSITIONS_KEY: positions.to(torch.float64),
            keys.SPECIES_KEY: species.to(torch.int64),
            keys.EDGE_INDEX_KEY: edge_index.to(torch.int64),
            keys.EDGE_SHIFT_KEY: edge_shift.to(torch.float64),
            keys.BATCH_KEY: torch.zeros(n, dtype=torch.int64, device=positions.device),
            keys.PTR_KEY: torch.tensor([0, n], dtype=torch.int64, device=positions.device),
            keys.NUM_LOCAL_KEY: torch.tensor(n_local, dtype=torch.int64, device=positions.device),
            keys.TOTAL_CHARGE_KEY: torch.tensor([total_charge], dtype=torch.float64, device=positions.device),
        }
        if chunk_atoms > 0:
            data[keys.CHUNK_ATOMS_KEY] = torch.tensor(chunk_atoms, dtype=torch.int64)
        out = self.potential(data)
        result = {
            keys.ENERGY_KEY: out[keys.ENERGY_KEY][0].detach(),
            keys.ATOMIC_ENERGY_KEY: out[keys.ATOMIC_ENERGY_KEY].detach(),
            keys.FORCES_KEY: out[keys.FORCES_KEY].detach(),
            keys.VIRIAL_KEY: out[keys.VIRIAL_KEY][0].detach(),
            keys.ATOMIC_VIRIAL_KEY: out[keys.ATOMIC_VIRIAL_KEY].detach(),
        }
        for name in self.graph_outputs:
            result[name] = out[name][0].detach()
        for name in self.atom_outputs:
            result[name] = out[name].detach()
        return result

    # ---- the halo protocol (mlff.modelfile.halo): one layer at a time, ghost features from outside

    @torch.jit.export
    def halo_feature_dim(self) -> int:
        """Number of values per atom exchanged after each layer but the last."""
        return self.feature_dim

    @torch.jit.export
    def halo_edges(self, positions: torch.Tensor, edge_index: torch.Tensor, species: torch.Tensor,
                   n_local: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edge vectors (a leaf that collects the force gradient), spherical harmonics and the
        radial MLP's input (the radial basis, with the edge's species if the model uses them).
        Edges must be centred on local atoms and sorted by centre."""
        n = positions.shape[0]
        if positions.dim() != 2 or positions.shape[1] != 3 or species.shape[0] != n:
            raise ValueError("mlff: positions must have shape (n, 3) and species shape (n,)")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError("mlff: edge_index must have shape (2, E)")
        if n_local < 0 or n_local > n:
            raise ValueError("mlff: n_local must lie in [0, number of atoms]")
        if n > 0 and (int(species.min()) < 0 or int(species.max()) >= self.num_species):
            raise ValueError("mlff: species index out of range for this model")
        center = edge_index[0]
        if center.numel() > 0 and (int(center.max()) >= n_local or bool((center[1:] < center[:-1]).any())):
            raise ValueError("mlff: halo edges must be centred on local atoms and sorted by centre")
        positions = positions.to(torch.float64)
        vec = (positions[edge_index[1]] - positions[center]).detach().requires_grad_(True)
        edge_sh, edge_radial = self.potential.edge_embedding(vec, edge_index, species)
        if self.pair_repulsion:
            pair = self.potential.pair_edge_energy(vec, edge_index, species).to(edge_radial.dtype)
            edge_radial = torch.cat([edge_radial, pair.unsqueeze(-1)], dim=1)
        return vec, edge_sh, edge_radial

    def _layer_radial(self, edge_radial: torch.Tensor) -> torch.Tensor:
        """The layers' part of ``halo_edges``' radial input (without the pair-energy column)."""
        if self.pair_repulsion:
            return edge_radial[:, :-1]
        return edge_radial

    def _with_pair(self, index: int, y: torch.Tensor, edge_index: torch.Tensor, edge_radial: torch.Tensor,
                   n_local: int) -> torch.Tensor:
        """The last layer's local rows with each atom's pair energy as one more column."""
        if not self.pair_repulsion or index != self.num_layers - 1:
            return y
        pair = self._pair_energy(edge_index, edge_radial, n_local)
        return torch.cat([y, pair.to(y.dtype).unsqueeze(-1)], dim=1)

    def _pair_energy(self, edge_index: torch.Tensor, edge_radial: torch.Tensor, n_local: int) -> torch.Tensor:
        """Each local atom's pair energy ``(n_local,)``: its edges' shares, the last radial column."""
        pair = torch.zeros(n_local, dtype=edge_radial.dtype, device=edge_radial.device)
        return pair.index_add(0, edge_index[0], edge_radial[:, -1])

    @torch.jit.export
    def halo_embed(self, species: torch.Tensor) -> torch.Tensor:
        """Input features of layer 0 for all atoms (local and ghost)."""
        return self.potential.embed(species)[1]

    @torch.jit.export
    def halo_layer(self, index: int, x: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                   edge_sh: torch.Tensor, edge_radial: torch.Tensor, n_local: int) -> torch.Tensor:
        """Layer ``index`` on the features ``x`` of all atoms -> new features of the local ones."""
        return self.layer_local(index, x, species, edge_index, edge_sh, edge_radial, n_local, None)

    def layer_local(self, index: int, x: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                    edge_sh: torch.Tensor, edge_radial: torch.Tensor, n_local: int,
                    layout: Optional[Tuple[torch.Tensor, torch.Tensor, int]]) -> torch.Tensor:
        """``halo_layer`` with the edges' dense layout given (``(rows, slot, K)``, see
        :func:`~mlff.nn.tensor_product.dense_rows`) or derived (None): what a compiled layer traces
        (:mod:`mlff.modelfile.compiled_layers`), since a compiled graph cannot derive shapes from values."""
        attrs = self.potential.attributes(species)
        y = self.potential.interaction(index, x, attrs, edge_index, edge_sh, self._layer_radial(edge_radial), n_local,
                                       layout)
        return self._with_pair(index, y, edge_index, edge_radial, n_local)

    @torch.jit.export
    def halo_layer_chunked(self, index: int, x: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                           edge_sh: torch.Tensor, edge_radial: torch.Tensor, n_local: int,
                           chunk_atoms: int) -> torch.Tensor:
        """``halo_layer`` with no autograd graph, ``chunk_atoms`` local atoms at a time (bounded
        memory); its backward is ``halo_layer_grad``."""
        if chunk_atoms < 1:
            raise ValueError("mlff: chunk_atoms must be a positive number of atoms")
        attrs = self.potential.attributes(species)
        y = self.potential.layer_forward_chunked(index, x, attrs, edge_index, edge_sh,
                                                 self._layer_radial(edge_radial), n_local, chunk_atoms)
        return self._with_pair(index, y, edge_index, edge_radial.detach(), n_local)

    @torch.jit.export
    def halo_layer_grad(self, index: int, x: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                        edge_sh: torch.Tensor, edge_radial: torch.Tensor, n_local: int, chunk_atoms: int,
                        grad_output: torch.Tensor, need_x: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The backward of ``halo_layer_chunked`` for the gradient ``grad_output`` ``(n_local, F)``
        of its output, recomputing one chunk at a time: gradients w.r.t. ``x`` (all atoms; zeros
        unless ``need_x``) and the edge features, as ``halo_grad`` returns them."""
        if chunk_atoms < 1:
            raise ValueError("mlff: chunk_atoms must be a positive number of atoms")
        attrs = self.potential.attributes(species)
        grad_layer = grad_output.to(x.dtype)
        if self.pair_repulsion and index == self.num_layers - 1:
            grad_layer = grad_layer[:, :self.last_dim]
        grad_x, grad_sh, grad_radial = self.potential.layer_backward_chunked(
            index, x, attrs, edge_index, edge_sh.detach(), self._layer_radial(edge_radial.detach()), n_local,
            chunk_atoms, grad_layer, need_x)
        if grad_x is None:
            grad_x = torch.zeros_like(x)
        if self.pair_repulsion:  # the pair column: each edge gets its centre's gradient
            grad_pair = torch.zeros(edge_radial.shape[0], 1, dtype=grad_radial.dtype, device=grad_radial.device)
            if index == self.num_layers - 1:
                grad_pair = grad_output[:, self.last_dim:].to(grad_radial.dtype).index_select(0, edge_index[0])
            grad_radial = torch.cat([grad_radial, grad_pair], dim=1)
        return grad_x, grad_sh, grad_radial

    @torch.jit.export
    def halo_last_layer_chunked(self, x: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                                edge_sh: torch.Tensor, edge_radial: torch.Tensor, n_local: int, chunk_atoms: int
                                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last layer and the readout with their backward, ``chunk_atoms`` local atoms at a
        time, each chunk's gradient taken right after its forward (the readout is per atom): what
        ``halo_layer_chunked``, ``halo_energy``, ``halo_grad`` and ``halo_layer_grad`` do for the
        last layer, with the layer run once instead of twice. Returns the local atoms' energies
        ``(n_local,)`` (float64) and the gradients of their sum w.r.t. ``x`` (all atoms; zeros for
        a one-layer model) and the edge features, as ``halo_layer_grad`` returns them."""
        if chunk_atoms < 1:
            raise ValueError("mlff: chunk_atoms must be a positive number of atoms")
        attrs = self.potential.attributes(species)
        local = torch.ones(n_local, dtype=torch.bool, device=x.device)
        _, energy, grads = self.potential.last_layer_chunked(
            x, attrs, species, local, edge_index, edge_sh.detach(), self._layer_radial(edge_radial.detach()),
            n_local, chunk_atoms, torch.float64, None, None, False)
        grad_x, grad_sh, grad_radial = grads
        if grad_x.shape[0] == 0:
            grad_x = torch.zeros_like(x)
        if self.pair_repulsion:  # each local atom's pair energy: its edges' shares, each with gradient 1
            energy = energy + self._pair_energy(edge_index, edge_radial.detach(), n_local).to(torch.float64)
            grad_radial = torch.cat([grad_radial, grad_radial.new_ones((grad_radial.shape[0], 1))], dim=1)
        return energy, grad_x, grad_sh, grad_radial

    @torch.jit.export
    def halo_join(self, local: torch.Tensor, ghost: torch.Tensor) -> torch.Tensor:
        """Next layer's input: the local rows (cut from their graph) and the received ghost rows,
        as one leaf that collects the gradient to send back."""
        ghost = ghost.to(dtype=local.dtype, device=local.device)
        return torch.cat([local.detach(), ghost]).requires_grad_(True)

    @torch.jit.export
    def halo_energy(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Last layer's local features -> per-atom energies (n_local,), float64."""
        if self.pair_repulsion:  # the learned energy plus the pair column halo_layer appended
            learned = self.potential.atomic_energy(x[:, :self.last_dim], species)
            return (learned + x[:, self.last_dim]).to(torch.float64)
        return self.potential.atomic_energy(x, species).to(torch.float64)

    @torch.jit.export
    def halo_grad(self, output: torch.Tensor, grad_output: torch.Tensor, x: torch.Tensor, need_x: bool,
                  edge_sh: torch.Tensor, edge_radial: torch.Tensor
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backward of one layer (or of the readout and last layer): gradients of
        ``sum(output * grad_output)`` w.r.t. the layer input ``x`` (zeros unless ``need_x``) and
        the edge features."""
        grad_x, grad_sh, grad_radial = torch.zeros_like(x), torch.zeros_like(edge_sh), torch.zeros_like(edge_radial)
        # only what depends on the input (l_max 0 has constant harmonics; layer 0's input is fixed)
        use_sh, use_radial, use_x = edge_sh.requires_grad, edge_radial.requires_grad, need_x and x.requires_grad
        inputs: List[torch.Tensor] = []
        if use_sh:
            inputs.append(edge_sh)
        if use_radial:
            inputs.append(edge_radial)
        if use_x:
            inputs.append(x)
        if not output.requires_grad or len(inputs) == 0:
            return grad_x, grad_sh, grad_radial
        grad_outputs: List[Optional[torch.Tensor]] = [grad_output.to(output.dtype)]
        grads = torch.autograd.grad([output], inputs, grad_outputs, allow_unused=True)
        k = 0
        if use_sh:
            g = grads[k]
            k += 1
            if g is not None:
                grad_sh = g
        if use_radial:
            g = grads[k]
            k += 1
            if g is not None:
                grad_radial = g
        if use_x:
            g = grads[k]
            if g is not None:
                grad_x = g
        return grad_x, grad_sh, grad_radial

    @torch.jit.export
    def halo_edge_gradients(self, positions: torch.Tensor, edge_index: torch.Tensor, species: torch.Tensor,
                            grad_sh: torch.Tensor, grad_radial: torch.Tensor,
                            n_atoms: int, edge_block: int = 262144) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``halo_outputs`` for edges whose ``halo_edges`` ran without an autograd graph (bounded
        memory: an engine that evaluates the layers in chunks keeps no graph of every edge): the
        edge embedding is recomputed ``edge_block`` edges at a time (about 60 MB of graph) to carry the edge-feature
        gradients to the edge vectors. The same forces (n, 3), virial (3, 3) and per-atom virial
        (n, 3, 3), float64."""
        positions = positions.to(torch.float64)
        num_edges = edge_index.shape[1]
        vec = (positions[edge_index[1]] - positions[edge_index[0]]).detach()
        blocks: List[int] = []  # the first edge of each block, then the end
        for e0 in range(0, num_edges, max(1, edge_block)):
            blocks.append(e0)
        blocks.append(num_edges)
        grad_pair: Optional[torch.Tensor] = None
        if self.pair_repulsion:  # the pair-energy column halo_edges appends to the radial input
            grad_pair = grad_radial[:, -1]
            grad_radial = grad_radial[:, :-1]
        edge_grad = self.potential.edge_embedding_backward(vec, edge_index, species, grad_sh, grad_radial, grad_pair,
                                                           blocks)
        edge_graph = torch.zeros(num_edges, dtype=torch.int64, device=positions.device)
        forces, virial, atomic_virial = edge_gradient_outputs(edge_grad, vec, edge_index, edge_graph, n_atoms, 1)
        return forces, virial[0], atomic_virial

    @torch.jit.export
    def halo_outputs(self, edge_vec: torch.Tensor, edge_sh: torch.Tensor, edge_radial: torch.Tensor,
                     grad_sh: torch.Tensor, grad_radial: torch.Tensor, edge_index: torch.Tensor,
                     n_atoms: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forces (n, 3) on local and ghost atoms, virial (3, 3) and per-atom virial (n, 3, 3),
        float64, from the edge-feature gradients summed over all layers."""
        edge_grad: Optional[torch.Tensor] = None
        outputs: List[torch.Tensor] = []
        grad_outputs: List[Optional[torch.Tensor]] = []
        if edge_sh.requires_grad:
            outputs.append(edge_sh)
            grad_outputs.append(grad_sh.to(edge_sh.dtype))
        if edge_radial.requires_grad:
            outputs.append(edge_radial)
            grad_outputs.append(grad_radial.to(edge_radial.dtype))
        if len(outputs) > 0:
            edge_grad = torch.autograd.grad(outputs, [edge_vec], grad_outputs, allow_unused=True)[0]
        if edge_grad is None:
            edge_grad = torch.zeros_like(edge_vec)
        edge_graph = torch.zeros(edge_vec.shape[0], dtype=torch.int64, device=edge_vec.device)
        forces, virial, atomic_virial = edge_gradient_outputs(
            edge_grad.detach(), edge_vec.detach(), edge_index, edge_graph, n_atoms, 1)
        return forces, virial[0], atomic_virial


def metadata_for(potential: Potential) -> Dict[str, str]:
    """The ``_extra_files`` entries written beside the scripted model (all plain text)."""
    config = potential.config
    return {
        "format_version": str(FORMAT_VERSION),
        "mlff_version": __version__,
        "torch_version": torch.__version__,
        "e3nn_version": e3nn.__version__,
        "species": " ".join(potential.species),
        "r_cut": repr(float(config.r_cut)),
        "num_layers": str(int(config.num_layers)),
        "interaction_range": repr(float(config.r_cut) * int(config.num_layers)),
        "dtype": config.dtype,
        # extra per-structure outputs beside energy/forces/virial (engines may ignore them)
        "outputs": " ".join(potential.graph_outputs),
        **UNITS,
        "config.json": json.dumps(config.to_dict(), sort_keys=True),
        "capabilities": " ".join(CAPABILITIES),
    }


def script_potential(potential: Potential) -> torch.jit.ScriptModule:
    """A frozen-weights copy of ``potential`` in eval mode, wrapped and scripted."""
    if not isinstance(potential, Potential):
        raise TypeError(f"deploy expects an mlff Potential (from mlff.build_model), got {type(potential).__name__}")
    frozen = copy.deepcopy(potential).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    with torchscript_quiet(), sources_read_once():
        return script(DeployedPotential(frozen))


def deploy(potential: Potential, path: str | os.PathLike, compile: bool = False) -> str:
    """Write ``potential`` to ``path`` as one TorchScript file with its metadata.

    ``compile=True`` marks the file to run compiled on the CPU (:mod:`mlff.modelfile.compiled_copy`): the
    compiled copy is built now for this machine (a few minutes; needs g++) and cached, and
    :func:`mlff.load` builds it once on any other machine. The file itself carries no native code.
    It is written to a temporary name and renamed, so an interrupted export never leaves a
    truncated model behind (nor, after a kill, a temporary: the next export removes it).
    """
    from ..files import atomic_path

    path = os.fspath(path)
    scripted = script_potential(potential)
    extra_files: Dict[str, str | bytes] = dict(metadata_for(potential))
    if compile:
        from .compiled_copy import COMPILE_REQUEST, INFO_ENTRY

        extra_files[INFO_ENTRY] = json.dumps(COMPILE_REQUEST)
    with atomic_path(path, make_dirs=True) as tmp:
        with torchscript_quiet():
            torch.jit.save(scripted, tmp, _extra_files=extra_files)
        if compile:  # built (and checked) before the file appears under its name
            from .compiled_copy import build_local_package
            from .load import read_metadata

            with torchscript_quiet():
                saved = torch.jit.load(tmp, map_location="cpu")
            build_local_package(tmp, saved, read_metadata(tmp), name=os.path.basename(path))
    return path
