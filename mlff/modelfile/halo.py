"""The halo protocol: a model file evaluated layer by layer on a domain that owns some atoms and
sees the others within one cutoff, with the ghost atoms' features exchanged between layers.

A domain-decomposed engine (LAMMPS on MPI ranks) owns ``n_local`` atoms and keeps copies (ghosts)
of the atoms within ``r_cut`` of them, owned by itself (periodic images) or by other ranks. An
``L``-layer message-passing model reaches ``L`` cutoffs, so without communication every domain would
have to recompute a ghost shell ``L * r_cut`` deep. Instead, each layer computes the new features of
the local atoms only, and before the next layer each ghost's features are copied from its owner
(*forward exchange*). In the backward pass, the gradient that lands on a ghost's features is added
to its owner's (*reverse exchange*) before the previous layer's backward runs. The result is exact:
the same energy, forces and virials as the whole system in one piece.

The scripted model (:class:`mlff.modelfile.DeployedPotential`) exposes the steps; the engine calls
them in this order (``halo_evaluate`` below is the reference, the LAMMPS plugin the C++ one)::

    vec, sh, radial = m.halo_edges(positions, edge_index, species, n_local)   # local centres
    x = m.halo_embed(species)                              # layer 0 input, all atoms
    for k in range(L):
        y[k] = m.halo_layer(k, x, species, edge_index, sh, radial, n_local)  # local rows
        if k < L - 1:
            x = m.halo_join(y[k], forward_exchange(y[k]))  # + ghost rows from their owners
    atomic_energy = m.halo_energy(y[L - 1], species[:n_local])
    g = ones                                               # d(sum E_i)/d atomic_energy
    for k = L-1 .. 0:                                      # backward, layer by layer
        gx, g_sh, g_rad = m.halo_grad(output_k, g, x_k, k > 0, sh, radial)   (summed over k)
        g = gx[:n_local] + reverse_exchange(gx[n_local:])  # gradient w.r.t. y[k - 1]
    forces, virial, atomic_virial = m.halo_outputs(vec, sh, radial, g_sh, g_rad, edge_index, n)

With ``chunk_atoms`` (bounded memory, as ``forward_chunked``), each layer runs with no autograd
graph, ``chunk_atoms`` local atoms at a time, and its backward recomputes it chunk by chunk::

    y[k] = m.halo_layer_chunked(k, x_k, species, edge_index, sh, radial, n_local, chunk_atoms)   # k < L - 1
    # the last layer and the readout, each chunk's backward right after its forward (run once)
    atomic_energy, gx, g_sh, g_rad = m.halo_last_layer_chunked(x_{L-1}, species, edge_index, sh, radial,
                                                               n_local, chunk_atoms)
    for k = L-1 .. 0:
        if k < L - 1:
            gx, g_sh, g_rad = m.halo_layer_grad(k, x_k, species, edge_index, sh, radial, n_local,
                                                chunk_atoms, g, k > 0)
        g = gx[:n_local] + reverse_exchange(gx[n_local:])

A file without ``halo_last_layer_chunked`` (written before it) runs the last layer as the others and
starts the backward from ``halo_grad(halo_energy(last), ones, last, ...)``, ``last`` its output as
a leaf (``halo_join(y[L - 1], no rows)``).

Forces and per-atom virials come out for ghost atoms too: the engine adds them to the owners (as
LAMMPS's ``newton on`` reverse communication does for any many-body potential).
"""

from typing import Callable, Dict

import torch

Exchange = Callable[[torch.Tensor], torch.Tensor]
MIN_EDGE_BLOCK = 16384  # in chunks: the fewest edges whose embedding halo_edge_gradients recomputes at once


def halo_evaluate(module: torch.jit.ScriptModule, positions: torch.Tensor, edge_index: torch.Tensor,
                  species: torch.Tensor, n_local: int, forward_exchange: Exchange,
                  reverse_exchange: Exchange, chunk_atoms: int = 0, compiled=None) -> Dict[str, torch.Tensor]:
    """Run the halo protocol of a scripted model file on one domain.

    ``positions`` (n, 3) and ``species`` (n,) list the local atoms first; ``edge_index`` (2, E)
    holds the edges centred on local atoms, sorted by centre. ``forward_exchange(local_rows)``
    returns the ghost atoms' rows (n - n_local, F); ``reverse_exchange(ghost_rows)`` returns what
    the ghost rows add to the local atoms (n_local, F). ``chunk_atoms > 0``: the chunked variant
    (bounded memory). ``compiled``: the model's :class:`~mlff.modelfile.compiled_layers.CompiledLayers`,
    run in the chunked order with whole layers where the call's sizes allow (the plugin's ``compiled``
    path). Returns float64 ``energy`` (this domain's share), ``atomic_energy``
    (n_local,), ``forces`` (n, 3), ``virial`` (3, 3) and ``atomic_virial`` (n, 3, 3), the latter
    two including ghost rows. The scripted methods run as the plugin runs them: the JIT's plain
    executor (the optimising one re-profiles each new size, many times slower here).
    """
    with torch.jit.optimized_execution(False):
        return _evaluate(module, positions, edge_index, species, n_local, forward_exchange, reverse_exchange,
                         chunk_atoms, compiled)


def _evaluate(module: torch.jit.ScriptModule, positions: torch.Tensor, edge_index: torch.Tensor,
              species: torch.Tensor, n_local: int, forward_exchange: Exchange, reverse_exchange: Exchange,
              chunk_atoms: int, compiled) -> Dict[str, torch.Tensor]:
    num_layers = int(module.num_layers)
    # in chunks, with a file that recomputes them (halo_edge_gradients), the edges' embedding keeps
    # no autograd graph either
    edges_recomputed = bool(chunk_atoms) and hasattr(module, "halo_edge_gradients")
    with torch.set_grad_enabled(not edges_recomputed):
        vec, sh, radial = module.halo_edges(positions, edge_index, species, n_local)
    layer_inputs = None  # compiled: the layers' inputs after x
    if compiled is not None and not chunk_atoms:
        from .compiled_layers import dense_layout, usable

        rows, slot, width = dense_layout(edge_index, n_local)
        if usable(n_local, edge_index.shape[1], rows, width):
            layer_inputs = [species, edge_index, sh, radial, rows, slot, width, species[:n_local]]
    recompute = bool(chunk_atoms) or layer_inputs is not None  # no graph kept between forward and backward
    # in chunks, the last layer with its backward at once (a file that has it)
    fused_last = bool(chunk_atoms) and hasattr(module, "halo_last_layer_chunked")
    fused = None
    inputs = [module.halo_embed(species)]
    outputs, sums = [], []  # sums: the compiled layers' neighbour sums, for their backward
    for index in range(num_layers):
        if fused_last and index == num_layers - 1:
            fused = module.halo_last_layer_chunked(inputs[index], species, edge_index, sh, radial, n_local, chunk_atoms)
            break
        if layer_inputs is not None:
            y, aggregated = compiled.forward(index, [inputs[index]] + layer_inputs)
            sums.append(aggregated)
        elif chunk_atoms:
            y = module.halo_layer_chunked(index, inputs[index], species, edge_index, sh, radial, n_local, chunk_atoms)
        else:
            y = module.halo_layer(index, inputs[index], species, edge_index, sh, radial, n_local)
        outputs.append(y)
        if index < num_layers - 1:
            inputs.append(module.halo_join(y, forward_exchange(y.detach())))
            if recompute:  # the backward recomputes from the inputs alone
                outputs[index] = None
    # grad_sh, grad_radial: the edge features' gradients summed over the layers (starting from the
    # fused last layer's: fresh tensors)
    if fused is not None:
        atomic_energy, grad_sh, grad_radial = fused[0], fused[2], fused[3]
        output, grad = atomic_energy, atomic_energy  # (not read: the last layer's gradients are in fused)
    else:
        last = module.halo_join(outputs[-1], outputs[-1][:0]) if recompute else outputs[-1]
        atomic_energy = module.halo_energy(last, species[:n_local])
        output, grad = atomic_energy, torch.ones_like(atomic_energy)
        grad_sh, grad_radial = torch.zeros_like(sh), torch.zeros_like(radial)
        if recompute:  # the readout's gradient w.r.t. the last layer's output
            grad = module.halo_grad(atomic_energy, grad, last, True, sh, radial)[0]
            outputs, last = [], None
    for index in reversed(range(num_layers)):
        if fused is not None and index == num_layers - 1:
            grad_x, fused = fused[1], None
            g_sh = g_radial = None
        elif layer_inputs is not None:
            grad_x, g_sh, g_radial = compiled.backward(index, [inputs[index]] + layer_inputs, sums[index],
                                                       grad.to(inputs[index].dtype))
        elif chunk_atoms:
            grad_x, g_sh, g_radial = module.halo_layer_grad(index, inputs[index], species, edge_index, sh, radial,
                                                            n_local, chunk_atoms, grad, index > 0)
        else:
            grad_x, g_sh, g_radial = module.halo_grad(output, grad, inputs[index], index > 0, sh, radial)
        if g_sh is not None:
            grad_sh.add_(g_sh)
            grad_radial.add_(g_radial)
        inputs[index] = None  # memory is released as the backward goes down
        if sums:
            sums[index] = None
        if index > 0:
            if not recompute:
                output = outputs[index - 1]
            grad = grad_x[:n_local] + reverse_exchange(grad_x[n_local:])
    if edges_recomputed:  # in blocks of about one chunk's edges (the plugin's MIN_EDGE_BLOCK at least)
        sh = radial = None
        per_atom = -(-edge_index.shape[1] // max(n_local, 1))
        forces, virial, atomic_virial = module.halo_edge_gradients(positions, edge_index, species, grad_sh,
                                                                   grad_radial, positions.shape[0],
                                                                   max(MIN_EDGE_BLOCK, chunk_atoms * per_atom))
    else:
        forces, virial, atomic_virial = module.halo_outputs(vec, sh, radial, grad_sh, grad_radial, edge_index,
                                                            positions.shape[0])
    return {"energy": atomic_energy.detach().sum(), "atomic_energy": atomic_energy.detach(), "forces": forces,
            "virial": virial, "atomic_virial": atomic_virial}


def image_exchange(owner: torch.Tensor, n_local: int):
    """The exchanges of a single domain whose ghosts are all images of its own atoms (one MPI
    rank): ``owner`` (n,) maps every atom to the local atom it is a copy of."""
    ghost_owner = owner[n_local:]

    def forward(local: torch.Tensor) -> torch.Tensor:
        return local.index_select(0, ghost_owner)

    def reverse(ghost: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((n_local, ghost.shape[1]), dtype=ghost.dtype, device=ghost.device)
        return out.index_add(0, ghost_owner, ghost)

    return forward, reverse
