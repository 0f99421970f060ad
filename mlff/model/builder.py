"""``build_model``: the one place a :class:`Potential` is constructed from a config."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..data import SpeciesMap
from .config import ModelConfig
from .potential import Potential


def build_model(
    config: ModelConfig | str | None = None,
    species: Sequence[str] = (),
    seed: Optional[int] = None,
) -> Potential:
    """Build a potential for the given chemical species.

    Parameters
    ----------
    config : a :class:`ModelConfig`, a preset name (``"small"``, ``"medium"``, ``"large"``) or None
        for the defaults.
    species : chemical symbols, e.g. ``["Cu", "O"]``; their order defines the species indices.
    seed : optional seed for the weight initialisation.
    """
    if config is None:
        config = ModelConfig()
    elif isinstance(config, str):
        config = ModelConfig.preset(config)
    if not species:
        raise ValueError("build_model needs the chemical species, e.g. species=['Cu', 'O']")
    SpeciesMap(species)  # validates the symbols
    generator_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = Potential(config, list(species))
    finally:
        if seed is not None:
            torch.random.set_rng_state(generator_state)
    return model.to(getattr(torch, config.dtype))
