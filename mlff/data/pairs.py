"""Element pairs: their name in a radius mapping and their default pair-repulsion radius."""

from ase.data import chemical_symbols, covalent_radii


def pair_key(a: str, b: str) -> str:
    """The name of an element pair in a radius mapping (``ModelConfig.pair_repulsion_radii``):
    ``"C-H"``, the two symbols in alphabetical order."""
    return "-".join(sorted((a, b)))


def covalent_sum(a: str, b: str) -> float:
    """The default switch-off radius of elements ``a`` and ``b``: the sum of their covalent radii (Å)."""
    return float(covalent_radii[chemical_symbols.index(a)] + covalent_radii[chemical_symbols.index(b)])
