"""Fused edge convolution: the neighbour sum of an e3nn ``uvu`` tensor product, without the
per-edge intermediates of the generic implementation.

The reference computation of one interaction layer is::

    m_i = sum_{e = (i, j)} TP(x_j, Y_e; w_e)                (e3nn TensorProduct, then scatter)
    TP(x, Y; w)[u, k] = sum_paths pw * w[u] * sum_{a, b} C[a, b, k] x[u, a] Y[b]

with one path per (input irrep, spherical harmonic, output irrep), ``uvu`` connectivity (the
channel ``u`` of the input is kept, the single spherical-harmonic channel is summed), per-edge
weights ``w`` and the Clebsch-Gordan coefficients ``C`` (Wigner 3j) with e3nn's path
normalisation ``pw``. e3nn evaluates every path through the outer product ``x (x) Y`` per edge
(``[E, u, a, b]``) and stores a ``[E, mid]`` message tensor before the scatter; the force
backward then walks all of them again.

Here the paths that read one input irrep ``x_l1`` (a *block*) are evaluated together:

1. ``M = Y @ G`` with a constant ``G[b, (a, path, k)] = pw * C[a, b, k]``: one small matmul gives
   every path's coupling matrix ``M_e[a, (path, k)]`` for all edges at once (``[E, d1 * K]``);
2. the neighbour sum ``m_i[u, (path, k)] = sum_{e, a} (w_e[path, u] x_j[a, u]) M_e[a, (path, k)]``
   is, with the edges laid out densely per centre (``[rows, K_max]``), one batched matmul per atom
   over its edges and ``a``; the ``path == path'`` blocks of its result are the messages' sum, so
   the ``[E, u, K]`` messages are never formed;
3. a block with a single scalar path (``l x l -> 0``, the last layer) is a per-edge dot product
   over ``a`` with the channels innermost (vectorised), then a sum over each centre's row.

Slices of per-edge tensors are taken with ``torch.split`` (its backward is one concatenation, where
each slice's backward would zero-fill a full-size gradient), and dense tables are filled with
``index_put`` (autograd keeps the index, where ``index_copy`` keeps a copy of the values).

The parameters are those of the e3nn module (which has none of its own: the weights come from
the radial MLP), so :class:`FusedEdgeTensorProduct` is a drop-in implementation of the same layer;
``tests/model/test_fused_tp.py`` checks it against e3nn to 1e-12 in float64, with gradients.
"""

from typing import List, Tuple

import torch
from e3nn import o3
from e3nn.util.jit import compile_mode
from torch import nn


def dense_rows(center: torch.Tensor, num_nodes: int) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Dense per-centre layout of edges sorted by centre.

    Returns ``rows`` (the atoms that are the centre of at least one edge, ``[R]``), ``slot``
    (each edge's position ``row * K_max + k`` in a ``[R, K_max]`` table) and ``K_max``.
    """
    counts = torch.bincount(center, minlength=num_nodes)
    k_max = int(counts.max()) if center.numel() > 0 else 0
    has_edges = counts > 0
    rows = torch.nonzero(has_edges).squeeze(-1)
    row_of_node = torch.cumsum(has_edges.to(torch.int64), 0) - 1
    start = torch.cumsum(counts, 0) - counts
    position = torch.arange(center.shape[0], device=center.device) - start[center]
    return rows, row_of_node[center] * k_max + position, k_max


def _to_dense(values: torch.Tensor, slot: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Rows of ``values`` ``[E, C]`` placed at ``slot`` in a zero-padded ``[num_slots, C]`` table.

    ``index_put`` and not ``index_copy``: autograd keeps only the index for its backward, where
    ``index_copy`` would keep a copy of ``values``."""
    out = torch.zeros((num_slots, values.shape[1]), dtype=values.dtype, device=values.device)
    return out.index_put((slot,), values)


@compile_mode("script")
class FusedEdgeTensorProduct(nn.Module):
    """``scatter_sum(tp(x[neighbour], edge_sh, weights), center)`` for a ``uvu`` e3nn
    :class:`~e3nn.o3.TensorProduct` with per-edge weights, computed block by block.

    Irreps: ``tp.irreps_in1`` (node features) x ``tp.irreps_in2`` (edge spherical harmonics,
    multiplicity 1) -> ``tp.irreps_out`` (summed over each centre's edges).

    ``forward`` requires the edges sorted by centre (``center`` non-decreasing; ``Potential.forward``
    sorts them); ``rows``/``slot``/``k_max`` come from :func:`dense_rows`.
    """

    # per block: input slice, multiplicity, irrep dimension, coupling columns, weight columns
    x_sizes: List[int]  # dimension of each input irrep (irreps without paths are skipped)
    block_x: List[int]  # the input irrep each block reads
    block_mul: List[int]
    block_d1: List[int]
    block_m_sizes: List[int]
    block_w_sizes: List[int]
    block_paths: List[int]
    block_first: List[int]  # index of the block's first path
    # per path (in instruction order): output dimension, column offset inside the block
    path_dim: List[int]
    path_col: List[int]
    output_order: List[int]  # the paths in the order of ``tp.irreps_out``
    out_dim: int

    def __init__(self, tp: o3.TensorProduct):
        super().__init__()
        irreps_x, irreps_sh, irreps_out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
        if tp.internal_weights or tp.shared_weights:
            raise ValueError("FusedEdgeTensorProduct needs per-edge (external, unshared) weights")
        if any(mul != 1 for mul, _ in irreps_sh):
            raise ValueError(f"FusedEdgeTensorProduct needs multiplicity-1 edge irreps, got {irreps_sh}")
        instructions = [ins for ins in tp.instructions if 0 not in ins.path_shape]
        if any(ins.connection_mode != "uvu" or not ins.has_weight for ins in instructions):
            raise ValueError("FusedEdgeTensorProduct implements weighted 'uvu' paths only")
        if sorted(ins.i_out for ins in instructions) != list(range(len(irreps_out))):
            raise ValueError("FusedEdgeTensorProduct needs exactly one path per output irrep")
        blocks = sorted({ins.i_in1 for ins in instructions})

        # the flat weights of e3nn are laid out path after path; paths of one block must be adjacent
        order = [ins.i_in1 for ins in instructions]
        if order != sorted(order):
            raise ValueError("FusedEdgeTensorProduct needs the paths grouped by input irrep")

        sh_slices = irreps_sh.slices()
        columns: List[torch.Tensor] = []
        self.x_sizes = [mul_ir.dim for mul_ir in irreps_x]
        self.block_x, self.block_mul, self.block_d1 = [], [], []
        self.block_m_sizes, self.block_w_sizes, self.block_paths, self.block_first = [], [], [], []
        self.path_dim, self.path_col = [], []
        w_offset = 0
        for i_in1 in blocks:
            mul, ir_in = irreps_x[i_in1]
            paths = [ins for ins in instructions if ins.i_in1 == i_in1]
            d1 = ir_in.dim
            g_block = []  # [sh_dim, d1, K_block]
            col = 0
            for ins in paths:
                ir_sh, ir_out = irreps_sh[ins.i_in2].ir, irreps_out[ins.i_out].ir
                cg = o3.wigner_3j(ir_in.l, ir_sh.l, ir_out.l, dtype=torch.float64)  # [d1, d2, d3]
                g = torch.zeros(irreps_sh.dim, d1, ir_out.dim, dtype=torch.float64)
                g[sh_slices[ins.i_in2]] = ins.path_weight * cg.transpose(0, 1)
                g_block.append(g)
                self.path_dim.append(ir_out.dim)
                self.path_col.append(col)
                col += ir_out.dim
            columns.append(torch.cat(g_block, dim=2).reshape(irreps_sh.dim, d1 * col))
            self.block_x.append(i_in1)
            self.block_mul.append(mul)
            self.block_d1.append(d1)
            self.block_m_sizes.append(d1 * col)
            self.block_w_sizes.append(mul * len(paths))
            self.block_paths.append(len(paths))
            self.block_first.append(len(self.path_dim) - len(paths))
            w_offset += mul * len(paths)
        if w_offset != tp.weight_numel:
            raise ValueError("FusedEdgeTensorProduct: weight layout differs from the TensorProduct's")
        # float64 constants (the model's dtype conversion casts them once), derived from the irreps
        # and so not part of the state dict
        self.register_buffer("coupling", torch.cat(columns, dim=1), persistent=False)
        slot_of_path = [ins.i_out for ins in instructions]
        self.output_order = sorted(range(len(instructions)), key=lambda p: slot_of_path[p])
        self.irreps_in = irreps_x
        self.irreps_out = irreps_out
        self.out_dim = irreps_out.dim

    def forward(
        self,
        x: torch.Tensor,  # [n, irreps_in] node features
        edge_sh: torch.Tensor,  # [E, irreps_sh]
        weights: torch.Tensor,  # [E, weight_numel] per-edge path weights
        neighbour: torch.Tensor,  # [E] source atom of each edge
        rows: torch.Tensor,  # [R] centre atoms (from dense_rows)
        slot: torch.Tensor,  # [E] dense position of each edge
        k_max: int,
        num_out: int = -1,  # atoms to return (the centres are among them); all if < 0
    ) -> torch.Tensor:  # [num_out, irreps_out]
        if num_out < 0:
            num_out = x.shape[0]
        num_rows = rows.shape[0]
        num_slots = num_rows * k_max
        if num_rows == 0:  # no edges: nothing to sum
            return x.new_zeros((num_out, self.out_dim))
        # split (not slice): its backward is one concatenation instead of a zero-filled
        # full-size gradient per slice
        couplings = torch.split(edge_sh @ self.coupling.to(edge_sh.dtype), self.block_m_sizes, dim=1)
        weight_blocks = torch.split(weights, self.block_w_sizes, dim=1)
        x_blocks = torch.split(x, self.x_sizes, dim=1)
        pieces: List[torch.Tensor] = []  # per path, in instruction order: [R, mul, d3]
        for block in range(len(self.block_mul)):
            mul, d1, num_paths = self.block_mul[block], self.block_d1[block], self.block_paths[block]
            coupling = couplings[block]  # [E, d1 * width]
            width = coupling.shape[1] // d1
            first = self.block_first[block]
            w = weight_blocks[block]  # [E, paths * mul]
            # channels innermost: x_j[e, a, u] (one gather per block)
            x_t = x_blocks[self.block_x[block]].reshape(-1, mul, d1).transpose(1, 2)
            x_j = x_t.reshape(-1, d1 * mul).index_select(0, neighbour).reshape(-1, d1, 1, mul)
            if width == 1 and d1 > 1:
                # one scalar path (l x l -> 0): a dot product per edge, then the centre sum
                v = (x_j.squeeze(2) * coupling.unsqueeze(-1)).sum(1) * w  # [E, mul]
                dense = _to_dense(v, slot, num_slots)
                pieces.append(dense.reshape(num_rows, k_max, mul).sum(1).unsqueeze(-1))
            else:
                # per centre row r: m_r[(path, u), (path', k)] = sum_{e in r, a} (w_e[path, u]
                # x_j[a, u]) M_e[a, (path', k)]: one matmul per row over its edges and a; the
                # path == path' blocks are the result
                weighted = x_j * w.reshape(-1, 1, num_paths, mul)  # [E, d1, paths, mul]
                a = _to_dense(weighted.reshape(-1, d1 * num_paths * mul), slot, num_slots)
                m = _to_dense(coupling, slot, num_slots)
                # as m^T a: the large operand ``a`` keeps its layout, so the backward's gradient of
                # ``a`` comes out in it too (a compiled backward then gathers contiguous rows)
                full = torch.bmm(m.reshape(num_rows, k_max * d1, width).transpose(1, 2),
                                 a.reshape(num_rows, k_max * d1, num_paths * mul))  # [R, width, paths*mul]
                full = full.reshape(num_rows, width, num_paths, mul)
                for q in range(num_paths):
                    col, dim = self.path_col[first + q], self.path_dim[first + q]
                    pieces.append(full[:, col:col + dim, q, :].transpose(1, 2))
        dense_out = torch.cat([pieces[p].reshape(num_rows, -1) for p in self.output_order], dim=1)
        return _to_dense(dense_out, rows, num_out)
