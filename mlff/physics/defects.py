"""Defect energies of element crystals: what sets plasticity, diffusion and fracture, and what a
fit to bulk frames can miss while its mean errors look fine.

- :func:`stacking_fault_energy`: the intrinsic stacking fault of an fcc element (mJ/m^2);
- :func:`vacancy_energies`: a vacancy in a periodic supercell, its formation energy and the
  barrier of a nearest-neighbour hop into it (eV; the migration energy of vacancy diffusion);
- :func:`surface_energy`: a periodic slab against the same column of planes without vacuum
  (mJ/m^2), for the low-index facets of fcc and bcc elements (:data:`FACETS`).

Each relaxes the ions at a fixed cell (the relaxed energies DFT codes report) and takes any ASE
calculator, so a DFT reference comes from the same function as the model's value.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import numpy as np
from ase import Atoms, units

from .cells import lattice_kind, relax as relax_ions

MJ_PER_M2 = units._e * 1e20 * 1e3  # eV/Å^2 -> mJ/m^2


_SITES = {"fcc": [(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)],
          "bcc": [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5)]}
# the facets whose surface energies are computed (built by ase.build's fcc111, fcc100, bcc110, bcc100)
FACETS = {"fcc": ("111", "100"), "bcc": ("110", "100")}


class UnstableCrystal(ValueError):
    """A crystal whose atoms leave their sites while a defect's cell relaxes, or whose half-way
    point of a vacancy hop relaxes below the vacancy: its defect energies would be those of
    whatever it turns into (a mechanically unstable lattice, such as bcc aluminium)."""


# relaxing a defect's cell may move an atom this far, as a fraction of the nearest-neighbour
# distance (fcc aluminium's saddle moves its neighbours 5 %; bcc aluminium's moved them 30 %)
MAX_SHIFT = 0.2


def is_element(atoms: Atoms) -> bool:
    """Whether ``atoms`` holds one species (the crystals whose vacancy :func:`defect_energies` computes)."""
    return len(set(atoms.get_chemical_symbols())) == 1


def cubic_element(atoms: Atoms) -> Optional[str]:
    """``"fcc"`` or ``"bcc"`` when ``atoms`` is the conventional cubic cell of an element of that
    lattice (4 or 2 atoms of one species), otherwise ``None``."""
    if not is_element(atoms) or lattice_kind(atoms) != "cubic":
        return None
    scaled = np.round(np.mod(atoms.get_scaled_positions() - atoms.get_scaled_positions()[0], 1.0), 6) % 1.0
    sites = sorted(map(tuple, scaled))
    return next((name for name, expected in _SITES.items() if sites == expected), None)


def is_fcc_element(atoms: Atoms) -> bool:
    """Whether ``atoms`` is the conventional cubic cell of an fcc element (4 atoms of one species)."""
    return cubic_element(atoms) == "fcc"


def stacking_fault_energy(symbol: str, lattice_constant: float, calc, layers: int = 12, relax: bool = True,
                          fmax: float = 1e-3) -> float:
    """The intrinsic stacking fault energy (mJ/m^2) of an fcc element at ``lattice_constant``: a
    periodic column of ``layers`` (111) planes (a multiple of 3; 12 puts the faults 12 planes
    apart) against the same column whose third cell vector is shifted by a partial Burgers
    vector (a/6 <112>), which leaves one fault (...ABCBCA...: two planes in hcp stacking) per
    cell; ions relaxed at the fixed cells. The stacking fault energy is what sets dislocation
    splitting and twinning in fcc metals; a fit that misses hcp against fcc misses it too."""
    perfect = plane_column(symbol, "fcc", "111", lattice_constant, layers)
    faulted = perfect.copy()
    cell = faulted.cell.array.copy()
    cell[2] += (cell[0] + cell[1]) / 3.0  # the partial Burgers vector across the periodic boundary
    faulted.set_cell(cell, scale_atoms=False)
    energies = []
    for column in (perfect, faulted):
        column.calc = calc
        if relax:
            relax_ions(column, fmax, 200)
        energies.append(column.get_potential_energy())
    area = float(np.linalg.norm(np.cross(cell[0], cell[1])))
    return float((energies[1] - energies[0]) / area * MJ_PER_M2)


def vacancy_energies(atoms: Atoms, calc, repeat: Optional[tuple] = None, min_length: float = 8.0,
                     relax: bool = True, fmax: float = 1e-3, migration: Optional[bool] = None,
                     step: Callable[[str], None] = lambda what: None) -> Dict[str, float]:
    """The vacancy of the element crystal ``atoms`` (its cell at equilibrium) in a supercell of
    ``N`` sites, ``atoms`` repeated ``repeat`` times (default: along each cell vector the fewest
    times that make it at least ``min_length`` Å: 2x2x2 conventional fcc cells of aluminium, 32
    sites), the ions relaxed at the fixed cell:

    - ``vacancy``: the formation energy ``E(N - 1) - (N - 1) / N * E(N)`` (eV);
    - ``vacancy_sites``: ``N`` (the vacancy sees its periodic images, so a reference must use
      the same supercell);
    - ``vacancy_migration`` (with ``migration``; by default for fcc and bcc elements): the
      barrier (eV) of a nearest-neighbour hop into the vacancy, the energy of the saddle
      (:func:`vacancy_hop`: the hopping atom held half-way between the two sites while the
      others relax) above the relaxed vacancy.

    ``step(what)`` after the vacancy and after the saddle. :class:`UnstableCrystal` when relaxing
    moves an atom more than :data:`MAX_SHIFT` of the nearest-neighbour distance, or the saddle
    relaxes below the vacancy."""
    if not is_element(atoms):
        raise ValueError(f"the vacancy formation energy is computed for element crystals, not "
                         f"{atoms.get_chemical_formula()}")
    if migration is None:
        migration = cubic_element(atoms) is not None
    perfect = atoms.repeat(repeat or vacancy_supercell(atoms, min_length))
    perfect.calc = calc
    if relax:  # a crystal at equilibrium: nothing to do, except for free coordinates the cell left
        relax_ions(perfect, fmax)
    e_perfect = perfect.get_potential_energy()
    defect, saddle = vacancy_hop(perfect)
    nearest = float(perfect.get_distances(0, range(1, len(perfect)), mic=True).min())
    defect.calc = calc
    if relax:
        _relax_on_sites(defect, fmax, nearest, "the vacancy")
    n = len(perfect)
    e_defect = defect.get_potential_energy()
    out = {"vacancy": float(e_defect - (n - 1) / n * e_perfect), "vacancy_sites": n}
    step("vacancy")
    if migration:
        saddle.calc = calc
        if relax:
            _relax_on_sites(saddle, fmax, nearest, "the half-way point of a vacancy hop")
        out["vacancy_migration"] = float(saddle.get_potential_energy() - e_defect)
        if out["vacancy_migration"] <= 0:
            raise UnstableCrystal(f"the half-way point of a vacancy hop relaxed {-out['vacancy_migration']:.3f} eV "
                                  f"below the vacancy: it is no saddle, and the crystal no stable lattice")
        step("vacancy migration")
    return out


def _relax_on_sites(atoms: Atoms, fmax: float, nearest: float, what: str) -> None:
    """Relax the ions of ``atoms``; :class:`UnstableCrystal` if one moves more than
    :data:`MAX_SHIFT` of the nearest-neighbour distance ``nearest`` from where it started."""
    start = atoms.get_positions()
    relax_ions(atoms, fmax)
    shift = float(np.linalg.norm(atoms.get_positions() - start, axis=1).max())
    if shift > MAX_SHIFT * nearest:
        raise UnstableCrystal(f"relaxing {what} moved an atom {shift:.2f} Å, {100 * shift / nearest:.0f} % of the "
                              f"nearest-neighbour distance: the crystal does not hold its sites (mechanically "
                              f"unstable?), so its defect energies are not computed")


def vacancy_hop(perfect: Atoms) -> Tuple[Atoms, Atoms]:
    """The cells of :func:`vacancy_energies` from the ``perfect`` supercell of an element crystal:
    the vacancy (atom 0 removed) and the saddle of a hop into it, where the nearest neighbour of
    site 0 (the first, in index order) sits half-way between its site and the vacant one, held
    there (``FixAtoms``). In a crystal with one atom per primitive cell, inversion through that
    point maps the cell onto itself and swaps the two sites, so the force on the hopping atom
    vanishes there and relaxing the others keeps it so: a stationary point of the energy, and for
    the nearest-neighbour hop in fcc and bcc metals the saddle of the minimum-energy path (the
    tests check it for fcc against a climbing-image NEB, to 1 meV)."""
    from ase.constraints import FixAtoms

    vectors = perfect.get_distances(0, range(1, len(perfect)), mic=True, vector=True)
    lengths = np.linalg.norm(vectors, axis=1)
    hop = int(np.flatnonzero(lengths < lengths.min() + 1e-6)[0])  # index in the cell without atom 0
    defect = perfect.copy()
    del defect[0]
    saddle = defect.copy()
    saddle.positions[hop] = perfect.positions[0] + 0.5 * vectors[hop]
    saddle.set_constraint(FixAtoms(indices=[hop]))
    return defect, saddle


def vacancy_supercell(atoms: Atoms, min_length: float = 8.0) -> Tuple[int, int, int]:
    """How many times :func:`vacancy_energies` repeats ``atoms`` along each cell vector:
    the fewest that make it at least ``min_length`` Å (2x2x2 for fcc aluminium's cubic cell)."""
    return tuple(max(1, int(np.ceil(min_length / length - 1e-9))) for length in atoms.cell.lengths())


def plane_column(symbol: str, lattice: str, facet: str, lattice_constant: float, layers: int) -> Atoms:
    """A periodic column of ``layers`` ``facet`` planes of the ``lattice`` (fcc or bcc) element
    ``symbol``, one atom per plane (ASE's ``fcc111``, ``fcc100``, ``bcc110``, ``bcc100``); the layer
    count must keep the stacking periodic (a multiple of 3 for fcc (111), of 2 otherwise)."""
    from ase import build

    builder = getattr(build, f"{lattice}{facet}", None)
    if lattice not in FACETS or facet not in FACETS[lattice] or builder is None:
        raise ValueError(f"surface energies are computed for the facets {FACETS}, not {lattice} ({facet})")
    period = 3 if (lattice, facet) == ("fcc", "111") else 2  # ABC or AB stacking
    if layers % period:
        raise ValueError(f"a periodic column of {lattice} ({facet}) planes needs a multiple of {period} layers, "
                         f"not {layers}")
    return builder(symbol, size=(1, 1, layers), a=lattice_constant, vacuum=None, periodic=True)


def surface_cells(symbol: str, lattice: str, facet: str, lattice_constant: float, layers: int = 6,
                  vacuum: float = 8.0) -> Tuple[Atoms, Atoms]:
    """The cells of :func:`surface_energy`: a periodic column of ``layers`` ``facet`` planes (the
    bulk) and the same planes as a slab with ``vacuum`` Å on either side."""
    column = plane_column(symbol, lattice, facet, lattice_constant, layers)
    slab = column.copy()
    slab.center(vacuum=vacuum, axis=2)
    return column, slab


def surface_energy(symbol: str, lattice: str, facet: str, lattice_constant: float, calc, layers: int = 6,
                   vacuum: float = 8.0, relax: bool = True, fmax: float = 1e-3, slab_calc=None) -> float:
    """The energy (mJ/m^2) of the ``facet`` surface (``"111"``, ``"100"``, ``"110"``: :data:`FACETS`)
    of the ``lattice`` (fcc or bcc) element ``symbol``: a slab of ``layers`` planes, periodic in
    its plane with ``vacuum`` Å on either side, against the same column of planes without the
    vacuum (the bulk, with the same in-plane cell and atoms), divided by its two faces; the slab's
    ions relaxed at the fixed cell. ``slab_calc``: a calculator for the slab (a DFT code's,
    with one k-point along the normal), ``calc`` otherwise."""
    column, slab = surface_cells(symbol, lattice, facet, lattice_constant, layers, vacuum)
    column.calc = calc
    slab.calc = slab_calc if slab_calc is not None else calc
    if relax:
        relax_ions(slab, fmax)
    area = float(np.linalg.norm(np.cross(column.cell[0], column.cell[1])))
    return float((slab.get_potential_energy() - column.get_potential_energy()) / (2.0 * area) * MJ_PER_M2)


def defect_energies(atoms: Atoms, lattice_constant: float, calc, relax: bool = True,
                    step=lambda what: None) -> Dict[str, float]:
    """The vacancy of the element crystal ``atoms`` (at equilibrium: :func:`vacancy_energies`, its
    migration energy for fcc and bcc elements) and, for fcc and bcc elements, the surface energies
    of :data:`FACETS` at ``lattice_constant``: ``{"vacancy": eV, "vacancy_sites": N,
    "vacancy_migration": eV, "surface_111": mJ/m^2, ...}``; ``step(what)`` after each."""
    out: Dict[str, float] = dict(vacancy_energies(atoms, calc, relax=relax, step=step))
    lattice = cubic_element(atoms)
    for facet in FACETS.get(lattice, ()):
        out[f"surface_{facet}"] = surface_energy(atoms.get_chemical_symbols()[0], lattice, facet, lattice_constant,
                                                 calc, relax=relax)
        step(f"surface ({facet})")
    return out


def defect_steps(atoms: Atoms) -> int:
    """How many ``step`` calls :func:`defect_energies` makes for ``atoms``."""
    lattice = cubic_element(atoms)
    return 1 + (lattice is not None) + len(FACETS.get(lattice, ()))
