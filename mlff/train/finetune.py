"""Fine-tuning: start training from an existing model (``init_from``), possibly with new species,
and optionally with some modules frozen (``freeze``).

The species enter a model in three places (four with ``radial_species``): the species embedding (a
linear map of the one-hot species), each layer's species-dependent self-connection (a tensor
product with the one-hot species), the per-species energy shifts, and with ``radial_species`` the
first layer of each radial MLP (whose inputs include the one-hot species of the edge's two
atoms). :func:`with_species` copies a model into one that knows more species
(:meth:`~mlff.model.Potential.load_grown`: each of those modules grows its own weights, see
:mod:`mlff.nn.species`): the old species' weights are copied (rescaled for e3nn's fan-in
normalisation, which counts species), the new species' weights are initialised as in a fresh
model. For structures of the old species the copy predicts exactly what the original did.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence


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
    try:
        new.load_grown(model, [(species.index(s), old_index[s]) for s in model.species])
    except ValueError as error:
        raise ValueError(f"with_species: {error}") from None
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
