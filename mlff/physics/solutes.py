"""Solutes in an element crystal: what an alloy potential must get right for precipitation and
diffusion, and what a fit to small cells can miss while its mean errors look fine.

:func:`solute_energies` puts one atom of another element on a site of the host's vacancy
supercell (:func:`mlff.physics.defects.vacancy_supercell`, N sites) and, beside it, a vacancy:

- ``substitution_X`` (eV): ``E(host N-1, X) - (N - 1) / N * E(host N)``, the energy of the host
  crystal with one atom exchanged for X, the host atom put back in the bulk. Less X's energy per
  atom in its own crystal, it is the dilute **solution energy** ``solution_X`` (eV; negative:
  X dissolves exothermically), which :func:`solution_energies` forms once X's crystal is known;
- ``solute_vacancy_binding_X`` (eV): ``E(X) + E(vacancy) - E(X next to the vacancy) - E(host)``,
  positive when the pair is bound (it attracts vacancies to solutes, which sets how quenched-in
  vacancies speed up clustering in aluminium alloys);
- ``solute_migration_X`` (eV): the barrier of X exchanging with the vacancy next to it, the
  saddle found as for the host's own hops (:func:`mlff.physics.defects.vacancy_hop`: X held on
  the plane half-way between the two sites, all relaxed). Negative when that half-way point lies
  below the pair: X then sits between two vacant sites (a split vacancy), and this is no barrier.

Hosts are fcc, bcc and hcp elements; hcp ones get both hops of
:data:`mlff.physics.defects.HOPS` (``solute_vacancy_binding_basal_X``,
``solute_migration_out_of_basal_X``, ...). Cells keep the host's lattice constant (the dilute
limit) and relax their ions; a solute that leaves its site while a cell relaxes gets no energies
from there on, and the reason (``solutes_skipped``). Any ASE calculator works, so a DFT
reference comes from the same function.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Sequence

from ase import Atoms
from ase.data import chemical_symbols

from .defects import (HOPS, MAX_SHIFT, VacancyCells, element_lattice, relax_and_measure, vacancy_cells, vacancy_hop,
                      vacancy_hops)

# the per-solute properties, as key prefixes (``substitution_Mg``, ``solute_migration_basal_Mg``)
SOLUTE_PREFIXES = ("solution", "substitution", "solute_vacancy_binding", "solute_migration")


def solute_keys(host: Atoms, solute: str) -> list:
    """The keys :func:`solute_energies` and :func:`solution_energies` give for ``solute`` in the
    fcc, bcc or hcp element crystal ``host``, in the order of a report."""
    suffixes = [name[len("vacancy_migration"):] for name in HOPS[element_lattice(host)]]
    return ([f"solution_{solute}", f"substitution_{solute}"]
            + [f"solute_vacancy_binding{suffix}_{solute}" for suffix in suffixes]
            + [f"solute_migration{suffix}_{solute}" for suffix in suffixes])


def solute_steps(host: Atoms, solutes: Sequence[str], migration: bool = True) -> int:
    """How many ``step`` calls :func:`solute_energies` makes in the fcc, bcc or hcp element crystal ``host``."""
    hops = len(HOPS[element_lattice(host)])
    return 1 + len(solutes) * (1 + hops * (1 + int(migration)))


def check_solutes(host: Atoms, solutes: Iterable[str]) -> list:
    """The solutes of ``host`` (an fcc, bcc or hcp element crystal:
    :func:`mlff.physics.defects.element_lattice`), checked: known element symbols, other than
    the host's. A clear ``ValueError`` otherwise."""
    symbols = set(host.get_chemical_symbols())
    if element_lattice(host) not in HOPS:
        raise ValueError(f"solute energies are computed in fcc, bcc and hcp element crystals (their conventional "
                         f"cubic cell, or hcp's two-atom hexagonal cell), not {host.get_chemical_formula()}")
    out = []
    for solute in solutes:
        if solute not in chemical_symbols[1:]:
            raise ValueError(f"solute {solute!r} is not an element symbol (write Mg, Si, ...)")
        if solute in symbols:
            raise ValueError(f"solute {solute} is the host crystal's own element")
        if solute not in out:
            out.append(solute)
    return out


def solute_energies(atoms: Atoms, solutes: Sequence[str], calc, repeat: Optional[tuple] = None,
                    min_length: float = 8.0, relax: bool = True, fmax: float = 1e-3, migration: bool = True,
                    step: Callable[[str], None] = lambda what: None,
                    cells: Optional[VacancyCells] = None) -> Dict[str, object]:
    """The module's energies of each of ``solutes`` (element symbols) in the element crystal
    ``atoms`` (its cell at equilibrium), in the vacancy's supercell (``repeat``, ``min_length``:
    :func:`mlff.physics.defects.vacancy_energies`), the ions relaxed at the fixed cell unless
    not ``relax``: ``{"solute_sites": N, "substitution_Mg": eV, "solute_vacancy_binding_Mg":
    eV, "solute_migration_Mg": eV, ...}``, without the migration energies when not
    ``migration``. The vacancy sits on site 0 and the solute on the neighbour that hops into it
    (:func:`mlff.physics.defects.vacancy_hops`). ``step(what)`` after the host's cells and after
    each solute's cell. When relaxing a cell moves an atom more than
    :data:`mlff.physics.defects.MAX_SHIFT` of the nearest-neighbour distance, the vacancy raises
    :class:`mlff.physics.defects.UnstableCrystal` (the host does not hold its sites), and a
    solute's cell ends that solute's energies, the reason in ``solutes_skipped[solute]`` (such a
    solute may prefer another configuration, such as a split vacancy). ``cells``: the host's
    relaxed perfect and vacancy cells (:func:`mlff.physics.defects.vacancy_cells`), when already
    made."""
    solutes = check_solutes(atoms, solutes)
    lattice = element_lattice(atoms)
    if cells is None:
        cells = vacancy_cells(atoms, calc, repeat, min_length, relax, fmax)
    perfect, nearest = cells.perfect, cells.nearest
    n = len(perfect)

    def energy(cell: Atoms, what: str) -> float:
        cell.calc = calc
        if relax:
            shift = relax_and_measure(cell, fmax)
            if shift > MAX_SHIFT * nearest:
                raise _LeftItsSite(f"relaxing {what} moved an atom {shift:.2f} Å, {100 * shift / nearest:.0f} % "
                                   f"of the nearest-neighbour distance")
        return float(cell.get_potential_energy())

    step("host and vacancy")
    hops = vacancy_hops(perfect, lattice)  # site 0's neighbours: within and out of hcp's basal plane
    out: Dict[str, object] = {"solute_sites": n}
    per_solute = 1 + len(hops) * (1 + int(migration))
    for solute in solutes:
        done = [0]

        def stepped(what: str) -> None:
            done[0] += 1
            step(what)

        try:
            _solute_cells(out, perfect, cells.e_perfect, cells.e_vacancy, hops, solute, energy, migration, stepped)
        except _LeftItsSite as error:  # this solute only: the host and the other solutes stand
            out.setdefault("solutes_skipped", {})[solute] = (
                f"{error}: {solute} does not stay on its site (it may prefer another configuration, such as a "
                f"split vacancy), so its energies from there on are not computed")
            for _ in range(per_solute - done[0]):
                step(f"no {solute} energies")
    return out


class _LeftItsSite(Exception):
    """A solute's cell whose atoms left their sites while relaxing."""


def _solute_cells(out: Dict[str, object], perfect: Atoms, e_perfect: float, e_vacancy: float, hops: Dict[str, int],
                  solute: str, energy: Callable[[Atoms, str], float], migration: bool,
                  step: Callable[[str], None]) -> None:
    """One solute's energies of :func:`solute_energies` into ``out``, as they come (those before
    a cell that leaves its sites stand); ``energy(cell, what)``: its relaxed energy."""
    n = len(perfect)
    substituted = perfect.copy()
    substituted[next(iter(hops.values())) + 1].symbol = solute  # the first hop's neighbour, in the perfect cell
    e_solute = energy(substituted, f"{solute} on a site")
    out[f"substitution_{solute}"] = float(e_solute - (n - 1) / n * e_perfect)
    step(f"{solute} substituted")
    for name, hop in hops.items():
        suffix = name[len("vacancy_migration"):]
        pair, saddle = vacancy_hop(perfect, hop)
        pair[hop].symbol = solute
        saddle[hop].symbol = solute
        e_pair = energy(pair, f"{solute} beside the vacancy")
        out[f"solute_vacancy_binding{suffix}_{solute}"] = float(e_solute + e_vacancy - e_pair - e_perfect)
        step(f"{solute} beside the vacancy")
        if migration:
            out[f"solute_migration{suffix}_{solute}"] = energy(saddle, f"{solute} half-way into the vacancy") - e_pair
            step(f"{solute} half-way")


def solution_energies(properties: Dict[str, object], solute_energy: Dict[str, float]) -> Dict[str, float]:
    """``solution_X`` (eV) for each ``substitution_X`` in ``properties`` whose solute has an
    energy per atom in ``solute_energy`` (its lowest crystal's, eV/atom, from the same
    calculator): ``substitution_X - solute_energy[X]``."""
    out = {}
    for key, value in properties.items():
        solute = key[len("substitution_"):]
        if key.startswith("substitution_") and solute in solute_energy:
            out[f"solution_{solute}"] = float(value) - float(solute_energy[solute])
    return out
