"""Growing a species axis: the weights of a module trained for some species, copied into the same
module built for more species (fine-tuning with new elements, :func:`mlff.train.finetune.with_species`).

Each module with a species axis (:class:`~mlff.nn.SpeciesEmbedding`, the self-connection and
species-aware radial MLP of :class:`~mlff.nn.Interaction`, :class:`~mlff.nn.ScaleShift`) has a
``grown_state(old, keep)`` method built on these helpers: ``keep`` lists ``(new index, old index)``
of the species both know; the result holds the module's own parameter names. The old species'
weights are copied, rescaled where e3nn normalises by a fan-in that counts the species, so that
structures of the old species get exactly the old outputs; the new species keep the weights the
new module was initialised with.
"""

from typing import List, Sequence, Tuple

import torch

Keep = Sequence[Tuple[int, int]]


def path_blocks(module, weight: torch.Tensor) -> List[torch.Tensor]:
    """The per-instruction weight blocks of an e3nn ``Linear`` or ``TensorProduct``, shaped by path."""
    blocks, start = [], 0
    for ins in module.instructions:
        size = 1
        for dim in ins.path_shape:
            size *= dim
        blocks.append(weight[start:start + size].reshape(ins.path_shape))
        start += size
    return blocks


def grow_paths(new_module, old_module, keep: Keep, axis: int) -> torch.Tensor:
    """The flat weight of ``new_module`` (an e3nn ``Linear`` or ``TensorProduct`` whose paths have
    the species along ``axis``) with the old species' blocks of ``old_module`` copied, rescaled by
    the ratio of the two paths' normalisations (e3nn divides by a fan-in that counts the species)."""
    new_blocks = path_blocks(new_module, new_module.weight.detach().clone())
    old_blocks = path_blocks(old_module, old_module.weight.detach())
    for ins_old, ins_new, old_block, new_block in zip(old_module.instructions, new_module.instructions, old_blocks,
                                                        new_blocks):
        ratio = float(ins_old.path_weight) / float(ins_new.path_weight)
        for new_k, old_k in keep:
            new_block.select(axis, new_k).copy_(old_block.select(axis, old_k) * ratio)
    return torch.cat([b.reshape(-1) for b in new_blocks])


def grow_input_rows(new: torch.Tensor, old: torch.Tensor, leading: int, old_species: int, new_species: int,
                    keep: Keep) -> torch.Tensor:
    """A first-layer weight ``(inputs, hidden)`` whose inputs are ``leading`` species-independent
    values and then two one-hot species blocks (an edge's centre and neighbour): the leading rows
    and the old species' rows copied, rescaled for the fan-in normalisation (which counts the
    inputs); the new species' rows as initialised."""
    new = new.detach().clone()
    ratio = (new.shape[0] / old.shape[0]) ** 0.5
    new[:leading] = old[:leading] * ratio
    for block in range(2):  # centre species, neighbour species
        for new_k, old_k in keep:
            new[leading + block * new_species + new_k] = old[leading + block * old_species + old_k] * ratio
    return new


def grow_vector(new: torch.Tensor, old: torch.Tensor, keep: Keep) -> torch.Tensor:
    """A per-species vector: the old species' values copied, the new species' values zero."""
    out = torch.zeros_like(new)
    for new_k, old_k in keep:
        out[new_k] = old[old_k]
    return out
