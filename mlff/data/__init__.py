"""Data layer: field names, neighbour lists, atomic-data dictionaries and batching."""

from . import keys
from .atomic_data import AtomicData, SpeciesMap, collate, from_ase
from .neighbors import neighbor_list

__all__ = ["keys", "AtomicData", "SpeciesMap", "collate", "from_ase", "neighbor_list"]
