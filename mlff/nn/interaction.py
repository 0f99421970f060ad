"""Equivariant convolution (NequIP-style interaction block)."""

from typing import List, Optional, Tuple

import torch
from e3nn import o3
from e3nn.nn import Gate
from e3nn.util.jit import compile_mode
from torch import nn

from .radial import RadialMLP
from .species import Keep, grow_input_rows, grow_paths
from .tensor_product import FusedEdgeTensorProduct, dense_rows

TP_BACKENDS = ("fused", "e3nn")


def _scatter_sum(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros((n, src.shape[1]), dtype=src.dtype, device=src.device)
    return out.index_add_(0, index, src)


def _gate_irreps(irreps_target: o3.Irreps, irreps_reachable: o3.Irreps):
    """Split the reachable part of ``irreps_target`` into gate inputs (scalars, gates, gated)."""
    reachable = {ir for _, ir in irreps_reachable}
    scalars = o3.Irreps([(m, ir) for m, ir in irreps_target if ir.l == 0 and ir in reachable])
    gated = o3.Irreps([(m, ir) for m, ir in irreps_target if ir.l > 0 and ir in reachable])
    gate_ir = "0e" if o3.Irrep("0e") in reachable else "0o"
    gates = o3.Irreps([(m, gate_ir) for m, _ in gated])
    if scalars.num_irreps == 0:
        raise ValueError(
            f"hidden irreps {irreps_target} have no scalar reachable from {irreps_reachable}"
        )
    return scalars, gates, gated


@compile_mode("script")
class Interaction(nn.Module):
    r"""One message-passing layer.

    For each center atom i::

        m_i = 1/<N> sum_j TP(W x_j, Y(r_ij); R(|r_ij|, z_i, z_j))   (neighbour sum)
        x_i' = Gate(W' m_i + SC(x_i, z_i)) [+ x_i if the irreps match]

    where ``Y`` are the edge spherical harmonics, ``TP`` a Clebsch-Gordan tensor product (``uvu``
    paths) whose weights ``R`` are an MLP of the ``num_radial`` edge invariants (the radial basis,
    and optionally the species of the edge's atoms, see ``ModelConfig.radial_species``), ``SC`` a
    species-dependent self-connection and ``<N>`` the average number of neighbours.

    Irreps: ``irreps_in`` -> ``irreps_out`` (the reachable part of ``irreps_target``).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_target: o3.Irreps,
        irreps_attrs: o3.Irreps,
        num_radial: int,
        radial_hidden: int,
        radial_layers: int,
        avg_num_neighbors: float,
        tp_backend: str = "fused",
    ):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        irreps_sh = o3.Irreps(irreps_sh)
        irreps_target = o3.Irreps(irreps_target)
        target_irs = {ir for _, ir in irreps_target}

        mid: List[Tuple[int, o3.Irrep]] = []
        instructions = []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in target_irs:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid, perm, _ = o3.Irreps(mid).sort()
        instructions = [(i, j, perm[k], mode, train) for i, j, k, mode, train in instructions]

        scalars, gates, gated = _gate_irreps(irreps_target, irreps_mid)
        act_scalars = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
        act_gates = [torch.sigmoid if ir.p == 1 else torch.tanh for _, ir in gates]
        self.gate = Gate(scalars, act_scalars, gates, act_gates, gated)
        self.irreps_out = self.gate.irreps_out

        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.tp = o3.TensorProduct(
            self.irreps_in,
            irreps_sh,
            irreps_mid,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        if tp_backend not in TP_BACKENDS:
            raise ValueError(f"unknown tp_backend {tp_backend!r}; choose one of {TP_BACKENDS}")
        # the fused convolution implements the same layer (the TensorProduct holds no parameters)
        self.conv = FusedEdgeTensorProduct(self.tp)
        self.fused = tp_backend == "fused"
        self.radial = RadialMLP([num_radial] + radial_layers * [radial_hidden] + [self.tp.weight_numel])
        self.linear_out = o3.Linear(irreps_mid.simplify(), self.gate.irreps_in)
        self.self_connection = o3.FullyConnectedTensorProduct(
            self.irreps_in, irreps_attrs, self.gate.irreps_in
        )
        self.residual = self.irreps_in == self.irreps_out
        self.out_dim = self.irreps_out.dim
        self.inv_avg_num_neighbors = 1.0 / float(avg_num_neighbors)

    @torch.jit.unused
    def grown_state(self, old: "Interaction", keep: Keep) -> dict:
        """This layer's weights for more species, from ``old`` (see :mod:`mlff.nn.species`): the
        species self-connection, and the radial MLP's first layer if its inputs end with the
        one-hot species of an edge's two atoms (then they grow by two per new species)."""
        state = {"self_connection.weight": grow_paths(self.self_connection, old.self_connection, keep, axis=1)}
        new_w, old_w = self.radial.layer0.weight, old.radial.layer0.weight
        if new_w.shape != old_w.shape:
            new_species, old_species = self.self_connection.irreps_in2.num_irreps, old.self_connection.irreps_in2.num_irreps
            leading = new_w.shape[0] - 2 * new_species
            if leading != old_w.shape[0] - 2 * old_species:
                raise ValueError(f"radial MLP inputs {old_w.shape[0]} -> {new_w.shape[0]} do not fit "
                                 f"{old_species} -> {new_species} species")
            state["radial.layer0.weight"] = grow_input_rows(new_w, old_w, leading, old_species, new_species, keep)
        return state

    def forward(
        self,
        x: torch.Tensor,  # [n, irreps_in]
        attrs: torch.Tensor,  # [n, num_species]
        edge_index: torch.Tensor,  # [2, E]
        edge_sh: torch.Tensor,  # [E, irreps_sh]
        edge_radial: torch.Tensor,  # [E, num_radial]
        n_out: int = -1,
        layout: Optional[Tuple[torch.Tensor, torch.Tensor, int]] = None,
    ) -> torch.Tensor:  # [n_out, irreps_out]
        """New features of the first ``n_out`` atoms (all if ``n_out < 0``), whose edges must be
        the only ones given (``edge_index[0] < n_out``); the others are neighbours only.
        ``layout``: the edges' dense per-centre layout ``(rows, slot, K)`` if known (else derived
        from ``edge_index``, see :func:`~mlff.nn.tensor_product.dense_rows`)."""
        if n_out < 0:
            n_out = x.shape[0]
        aggregated = self.aggregate(self.linear_in(x), edge_sh, edge_radial, edge_index[0], edge_index[1], 0,
                                    n_out, layout)
        # sliced even when n_out covers every atom: a compiled graph then holds no guard on the sizes
        return self.update(aggregated, x[:n_out], attrs[:n_out])

    def aggregate(
        self,
        features: torch.Tensor,  # [n, irreps_in]: linear_in of every atom's features
        edge_sh: torch.Tensor,  # [E, irreps_sh]
        edge_radial: torch.Tensor,  # [E, num_radial]
        center: torch.Tensor,  # [E] in [first, first + count), sorted
        neighbour: torch.Tensor,  # [E]
        first: int,
        count: int,
        layout: Optional[Tuple[torch.Tensor, torch.Tensor, int]] = None,
    ) -> torch.Tensor:  # [count, irreps_mid]
        """The neighbour sums of atoms ``first .. first + count - 1``, from their edges (all of
        them, sorted by centre), divided by the average number of neighbours."""
        weights = self.radial(edge_radial)
        if first != 0:
            center = center - first
        if self.fused:  # edges must be sorted by centre (Potential.forward sorts them)
            if layout is None:
                rows, slot, k_max = dense_rows(center, count)
            else:
                rows, slot, k_max = layout
            aggregated = self.conv(features, edge_sh, weights, neighbour, rows, slot, k_max, count)
        else:
            messages = self.tp(features[neighbour], edge_sh, weights)
            aggregated = _scatter_sum(messages, center, count)
        return aggregated * self.inv_avg_num_neighbors

    def update(self, aggregated: torch.Tensor, x: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        """New features from the neighbour sums and the same atoms' old features and attributes."""
        out = self.gate(self.linear_out(aggregated) + self.self_connection(x, attrs))
        if self.residual:
            out = out + x
        return out

    # ---- chunked evaluation: peak memory bounded by a chunk of atoms (Potential's chunk_atoms) -------
    # ``bounds``: atom ranges [bounds[c], bounds[c + 1]); ``edge_bounds``: the ranges of their edges
    # (sorted by centre). The forward keeps no graph; the backward recomputes one chunk at a time.
    # A chunk reads only its edges' neighbours: their rows of ``x`` are gathered and ``linear_in``
    # runs on them there, so neither pass holds ``linear_in`` of all atoms or a gradient of that
    # size beside the one for ``x``.

    def _chunk(self, attrs: torch.Tensor, edge_sh: torch.Tensor, edge_radial: torch.Tensor, center: torch.Tensor,
               a0: int, a1: int, near: torch.Tensor, local: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """New features of atoms ``a0 .. a1 - 1`` from ``near`` (the rows of ``x`` of their edges'
        neighbours, ``local`` indexing them per edge) and ``rows`` (their own rows of ``x``)."""
        aggregated = self.aggregate(self.linear_in(near), edge_sh, edge_radial, center, local, a0, a1 - a0)
        return self.update(aggregated, rows, attrs[a0:a1])

    def chunked_forward(self, x: torch.Tensor, attrs: torch.Tensor, edge_sh: torch.Tensor,
                        edge_radial: torch.Tensor, center: torch.Tensor, neighbour: torch.Tensor,
                        bounds: List[int], edge_bounds: List[int]) -> torch.Tensor:
        """This layer's new features of atoms ``0 .. bounds[-1] - 1``, chunk by chunk, with no
        autograd graph."""
        with torch.no_grad():
            out = x.new_empty((bounds[-1], self.out_dim))
            for c in range(len(bounds) - 1):
                a0, a1, e0, e1 = bounds[c], bounds[c + 1], edge_bounds[c], edge_bounds[c + 1]
                nodes, local = torch.unique(neighbour[e0:e1], sorted=True, return_inverse=True)
                out[a0:a1] = self._chunk(attrs, edge_sh[e0:e1], edge_radial[e0:e1], center[e0:e1], a0, a1,
                                         x.index_select(0, nodes), local, x[a0:a1])
            return out

    def chunk_graph(self, x: torch.Tensor, attrs: torch.Tensor, edge_sh: torch.Tensor, edge_radial: torch.Tensor,
                    center: torch.Tensor, neighbour: torch.Tensor, a0: int, a1: int, e0: int, e1: int, need_x: bool
                    ) -> Tuple[torch.Tensor, List[torch.Tensor], torch.Tensor]:
        """One chunk's new features with an autograd graph from its own leaves: its edges' harmonics
        and radial inputs, and (if ``need_x``) the gathered rows of its edges' neighbours and its
        atoms' own rows. Returns the features, those leaves, and the neighbours' atom indices."""
        nodes, local = torch.unique(neighbour[e0:e1], sorted=True, return_inverse=True)
        sh = edge_sh[e0:e1].detach().requires_grad_(True)
        radial = edge_radial[e0:e1].detach().requires_grad_(True)
        near = x.index_select(0, nodes).detach().requires_grad_(need_x)
        rows = x[a0:a1].detach().requires_grad_(need_x)
        out = self._chunk(attrs, sh, radial, center[e0:e1], a0, a1, near, local, rows)
        return out, ([sh, radial, near, rows] if need_x else [sh, radial]), nodes

    @staticmethod
    def add_chunk_gradients(grads: List[Optional[torch.Tensor]], nodes: torch.Tensor, a0: int, a1: int, e0: int,
                            e1: int, grad_x: torch.Tensor, grad_sh: torch.Tensor, grad_radial: torch.Tensor):
        """Add the gradients with respect to :meth:`chunk_graph`'s leaves (in its order) into the
        layer's: ``grad_x`` (all atoms; unused unless the leaves include the rows) and the edges'."""
        g_sh, g_radial = grads[0], grads[1]
        if g_sh is not None:
            grad_sh[e0:e1] += g_sh
        if g_radial is not None:
            grad_radial[e0:e1] += g_radial
        if len(grads) > 2:
            g_near, g_rows = grads[2], grads[3]
            if g_near is not None:
                grad_x.index_add_(0, nodes, g_near)
            if g_rows is not None:
                grad_x[a0:a1] += g_rows

    def chunked_backward(self, x: torch.Tensor, attrs: torch.Tensor, edge_sh: torch.Tensor,
                         edge_radial: torch.Tensor, center: torch.Tensor, neighbour: torch.Tensor,
                         bounds: List[int], edge_bounds: List[int], grad_out: torch.Tensor,
                         need_x: bool, grad_sh_into: Optional[torch.Tensor] = None,
                         grad_radial_into: Optional[torch.Tensor] = None
                         ) -> Tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The gradients of ``sum(out * grad_out)`` with respect to ``x`` (if ``need_x``, else
        None), ``edge_sh`` and ``edge_radial``, recomputing the layer one chunk at a time: only
        one chunk's autograd graph is alive at once. The edges' gradients are added to
        ``grad_sh_into`` and ``grad_radial_into`` where given (and returned), so that the layers of
        a model share one pair of per-edge tensors."""
        grad_sh = torch.zeros_like(edge_sh) if grad_sh_into is None else grad_sh_into
        grad_radial = torch.zeros_like(edge_radial) if grad_radial_into is None else grad_radial_into
        grad_x = torch.zeros_like(x) if need_x else x.new_zeros(0)
        for c in range(len(bounds) - 1):
            a0, a1, e0, e1 = bounds[c], bounds[c + 1], edge_bounds[c], edge_bounds[c + 1]
            if e1 == e0 and not need_x:  # no edges, no gradient wanted from the atoms
                continue
            out, leaves, nodes = self.chunk_graph(x, attrs, edge_sh, edge_radial, center, neighbour, a0, a1, e0, e1,
                                                  need_x)
            seed: List[Optional[torch.Tensor]] = [grad_out[a0:a1]]
            grads = torch.autograd.grad([out], leaves, seed, allow_unused=True)
            self.add_chunk_gradients(grads, nodes, a0, a1, e0, e1, grad_x, grad_sh, grad_radial)
        if not need_x:
            return None, grad_sh, grad_radial
        return grad_x, grad_sh, grad_radial
