"""Fine-tuning: start training from an existing model (``init_from``), possibly with new species,
and optionally with some modules frozen (``freeze``).

The species enter a model in three places (four with ``radial_species``): the species embedding (a
linear map of the one-hot species), each layer's species-dependent self-connection (a tensor
product with the one-hot species), the per-species energy shifts, and with ``radial_species`` the
first layer of each radial MLP (whose inputs include the one-hot species of the edge's two
atoms). :func:`with_species` copies a model into one that knows more species: the old species'
weights are copied (rescaled for e3nn's fan-in normalisation, which counts species), the new
species' weights are initialised as in a fresh model. For structures of
the old species the copy predicts exactly what the original did.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import torch
from e3nn import o3

from ..model import ModelConfig, Potential, build_model


def load_pretrained(path: str | os.PathLike) -> Potential:
    """The eager model of a deployed model file (``model.pt``) or a training checkpoint
    (``best.pt``/``last.pt``, its EMA weights)."""
    from ..modelfile import model_from_file
    from .checkpoint import load_checkpoint, model_from_checkpoint

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"init_from: {path!r} does not exist")
    try:
        return model_from_checkpoint(load_checkpoint(path))
    except ValueError:
        pass
    try:
        return model_from_file(path)
    except Exception as error:
        raise ValueError(f"init_from: {path!r} is neither an mlff model file nor a training checkpoint "
                         f"({str(error).splitlines()[0]})") from None


def _species_modules(model: Potential) -> Dict[str, o3.TensorProduct | o3.Linear]:
    """Modules whose weights have a species axis, by parameter name."""
    modules = {"embedding.linear.weight": model.embedding.linear}
    for index, layer in enumerate(model.layers):
        modules[f"layers.{index}.self_connection.weight"] = layer.self_connection
    return modules


def _radial_inputs(model: Potential) -> List[str]:
    """Names of the radial MLPs' first-layer weights when their inputs include the species."""
    if not model.config.radial_species:
        return []
    return [f"layers.{index}.radial.layer0.weight" for index in range(len(model.layers))]


def _radial_rows(old: torch.Tensor, new: torch.Tensor, num_basis: int, old_species: int, new_species: int,
                 keep) -> torch.Tensor:
    """A radial MLP's first-layer weight ``(inputs, hidden)`` for more species: the basis rows and
    the old species' rows (centre block, then neighbour block) copied, rescaled for the fan-in
    normalisation (which counts the inputs); the new species' rows as initialised."""
    ratio = (new.shape[0] / old.shape[0]) ** 0.5
    new[:num_basis] = old[:num_basis] * ratio
    for block in range(2):  # centre species, neighbour species
        for new_k, old_k in keep:
            new[num_basis + block * new_species + new_k] = old[num_basis + block * old_species + old_k] * ratio
    return new


def _blocks(module, weight: torch.Tensor) -> List[torch.Tensor]:
    """The per-instruction weight blocks of an e3nn Linear or TensorProduct, shaped by path."""
    blocks, start = [], 0
    for ins in module.instructions:
        size = 1
        for dim in ins.path_shape:
            size *= dim
        blocks.append(weight[start:start + size].reshape(ins.path_shape))
        start += size
    return blocks


def with_species(model: Potential, species: Sequence[str], config: Optional[ModelConfig] = None,
                 seed: int = 0) -> Potential:
    """A copy of ``model`` that knows ``species`` (a superset of ``model.species``; the old species
    keep their order and come first). ``config`` may change options that keep the parameters
    (``dtype``, ``tp_backend``). New species start from a fresh model's weights and a zero shift."""
    species = list(species)
    missing = [s for s in model.species if s not in species]
    if missing:
        raise ValueError(f"with_species: {missing} of the model are missing from {species}")
    config = config or model.config
    new = build_model(config, species, seed=seed)
    old_index = {s: k for k, s in enumerate(model.species)}
    keep = [(species.index(s), old_index[s]) for s in model.species]  # (new index, old index)
    state = {k: v for k, v in model.state_dict().items() if "._w3j_" not in k}
    new_state = new.state_dict()
    old_modules, new_modules = _species_modules(model), _species_modules(new)
    radial_inputs = set(_radial_inputs(model))
    for name, value in state.items():
        target = new_state[name]
        if name in old_modules and value.shape != target.shape:
            old_blocks = _blocks(old_modules[name], value)
            new_blocks = _blocks(new_modules[name], target.clone())
            for ins_old, ins_new, old_block, new_block in zip(old_modules[name].instructions,
                                                                new_modules[name].instructions, old_blocks,
                                                                new_blocks):
                axis = 0 if name.startswith("embedding") else 1  # the species axis of the path
                # e3nn normalises each path by its fan-in, which counts the species: rescale so
                # that old species' outputs are unchanged
                ratio = float(ins_old.path_weight) / float(ins_new.path_weight)
                for new_k, old_k in keep:
                    new_block.select(axis, new_k).copy_(old_block.select(axis, old_k) * ratio)
            new_state[name] = torch.cat([b.reshape(-1) for b in new_blocks])
        elif name in radial_inputs and value.shape != target.shape:
            new_state[name] = _radial_rows(value, target.clone(), model.config.num_basis, len(model.species),
                                           len(species), keep)
        elif name == "scale_shift.shift":
            shift = torch.zeros_like(target)
            for new_k, old_k in keep:
                shift[new_k] = value[old_k]
            new_state[name] = shift
        elif value.shape == target.shape:
            new_state[name] = value
        else:
            raise ValueError(f"with_species: parameter {name} has shape {tuple(value.shape)} in the model and "
                             f"{tuple(target.shape)} in the copy: the architectures differ")
    new.load_state_dict(new_state)
    return new


def new_species_shifts(frames, species: Sequence[str], known: Dict[str, float],
                       e0: Optional[Dict[str, float]] = None) -> List[float]:
    """Per-species energy shifts for fine-tuning: ``known`` ones kept, the others from ``e0`` or a
    least-squares fit of what the known shifts leave of the total energies."""
    import numpy as np

    from ..data.stats import species_counts

    unknown = [s for s in species if s not in known]
    values = dict(known)
    if unknown and e0:
        missing = [s for s in unknown if s not in e0]
        if missing:
            raise ValueError(f"E0 gives no isolated-atom energy for the new species {missing}")
        values.update({s: float(e0[s]) for s in unknown})
    elif unknown:
        counts = species_counts(frames, species)
        columns = [species.index(s) for s in unknown]
        fixed = [species.index(s) for s in species if s in known]
        residual = np.array([f.energy for f in frames]) - counts[:, fixed] @ np.array([known[species[k]] for k in fixed])
        fitted, *_ = np.linalg.lstsq(counts[:, columns], residual, rcond=None)
        values.update(dict(zip(unknown, fitted.tolist())))
    return [float(values[s]) for s in species]


def freeze(model: Potential, prefixes: Sequence[str]) -> List[str]:
    """Stop gradients to the parameters under each module prefix (``embedding``, ``layers.0``,
    ``readout``, ...); returns the frozen parameter names. Unknown prefixes are an error."""
    names = [name for name, _ in model.named_parameters()]
    frozen = []
    for prefix in prefixes:
        matched = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not matched:
            modules = sorted({".".join(n.split(".")[:2]) if n.startswith("layers.") else n.split(".")[0]
                              for n in names})
            raise ValueError(f"freeze: {prefix!r} names no part of the model; choose from {modules}")
        frozen += matched
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return frozen
