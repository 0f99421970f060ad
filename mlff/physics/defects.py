"""Defect energies of element crystals: what sets plasticity, diffusion and fracture, and what a
fit to bulk frames can miss while its mean errors look fine.

- :func:`stacking_fault_energy`: the intrinsic stacking fault of an fcc element, the basal I2
  fault of an hcp one (mJ/m^2), and :func:`unstable_stacking_fault_energy`, the top of the
  generalized stacking fault curve (fcc, hcp, bcc; :func:`stacking_fault_curve`);
- :func:`vacancy_energies`: a vacancy in a periodic supercell, its formation energy and the
  barriers of nearest-neighbour hops into it (eV; the migration energies of vacancy diffusion:
  one hop in fcc and bcc elements, two in hcp ones, :data:`HOPS`);
- :func:`surface_energy`: a periodic slab against the same column of planes without vacuum
  (mJ/m^2), for the low-index facets of fcc, bcc and hcp elements (:data:`FACETS`).

Each relaxes the ions at a fixed cell (the relaxed energies DFT codes report) and takes any ASE
calculator, so a DFT reference comes from the same function as the model's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from ase import Atoms, units

from .cells import lattice_kind, relax as relax_ions

MJ_PER_M2 = units._e * 1e20 * 1e3  # eV/Å^2 -> mJ/m^2


_SITES = {"fcc": [(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)],
          "bcc": [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5)]}
# the second site of hcp's two-atom hexagonal cell, relative to the first (either orientation)
_HCP_SITES = [(1.0 / 3.0, 2.0 / 3.0, 0.5), (2.0 / 3.0, 1.0 / 3.0, 0.5)]
# the facets whose surface energies are computed (ase.build's fcc111, fcc100, bcc110, bcc100,
# hcp0001 and hcp10m10, the prism face cut between its widely spaced planes)
FACETS = {"fcc": ("111", "100"), "bcc": ("110", "100"), "hcp": ("0001", "10-10")}
# the nearest-neighbour hops into a vacancy whose barriers vacancy_energies reports, by lattice:
# in hcp within a basal plane and out of it (between the A and B planes), which differ
HOPS = {"fcc": ("vacancy_migration",), "bcc": ("vacancy_migration",),
        "hcp": ("vacancy_migration_basal", "vacancy_migration_out_of_basal")}


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


def element_lattice(atoms: Atoms) -> Optional[str]:
    """``"fcc"`` or ``"bcc"`` when ``atoms`` is the conventional cubic cell of an element of that
    lattice (4 or 2 atoms of one species), ``"hcp"`` for the two-atom hexagonal cell of an hcp
    element (ASE's ``bulk(..., "hcp")``, c along z), otherwise ``None``."""
    if not is_element(atoms):
        return None
    kind = lattice_kind(atoms)
    scaled = np.round(np.mod(atoms.get_scaled_positions() - atoms.get_scaled_positions()[0], 1.0), 6) % 1.0
    sites = sorted(map(tuple, scaled))
    if kind == "cubic":
        return next((name for name, expected in _SITES.items() if sites == expected), None)
    if kind == "hexagonal" and len(atoms) == 2:
        second = scaled[1]
        return "hcp" if any(np.allclose(second, site, atol=1e-5) for site in _HCP_SITES) else None
    return None


def cubic_element(atoms: Atoms) -> Optional[str]:
    """``"fcc"`` or ``"bcc"`` when ``atoms`` is the conventional cubic cell of an element of that
    lattice (4 or 2 atoms of one species), otherwise ``None``."""
    lattice = element_lattice(atoms)
    return lattice if lattice in _SITES else None


def is_fcc_element(atoms: Atoms) -> bool:
    """Whether ``atoms`` is the conventional cubic cell of an fcc element (4 atoms of one species)."""
    return cubic_element(atoms) == "fcc"


# the close-packed planes whose stacking faults are computed, and the slip on them (a partial
# Burgers vector in fcc and hcp, which leaves an intrinsic fault; bcc's full a/2 <111>)
SLIP_PLANES = {"fcc": "111", "hcp": "0001", "bcc": "110"}


def stacking_fault_energy(symbol: str, lattice_constant: float, calc, layers: int = 12, relax: bool = True,
                          fmax: float = 1e-3, lattice: str = "fcc", c: Optional[float] = None) -> float:
    """The intrinsic stacking fault energy (mJ/m^2) of an fcc element at ``lattice_constant``, or
    the basal I2 fault of an hcp element (``lattice="hcp"``, at ``a = lattice_constant`` and
    ``c``): a periodic column of ``layers`` close-packed planes (fcc (111), a multiple of 3; hcp
    (0001), a multiple of 2; 12 puts the faults 12 planes apart) against the same column whose
    third cell vector is shifted by a partial Burgers vector (a/6 <112> in fcc, a/3 <10-10> in
    hcp: the direction that puts no plane on top of its neighbour), which leaves one fault per
    cell: in fcc ...ABCBCA... (two planes in hcp stacking), in hcp ...ABABCACA... (two planes in
    fcc stacking); ions relaxed at the fixed cells. The stacking fault energy is what sets
    dislocation splitting and twinning in fcc metals and which slip systems hcp metals use; a fit
    that misses hcp against fcc misses it too."""
    if lattice not in ("fcc", "hcp"):
        raise ValueError(f"the intrinsic stacking fault energy is computed for fcc and hcp elements, not {lattice}")
    perfect = plane_column(symbol, lattice, SLIP_PLANES[lattice], lattice_constant, layers, c)
    return _fault_energies(perfect, [slip_vector(perfect, lattice)], calc, relax, fmax, normal_only=False)[0]


def unstable_stacking_fault_energy(symbol: str, lattice: str, lattice_constant: float, calc, layers: int = 12,
                                   relax: bool = True, fmax: float = 1e-3, c: Optional[float] = None) -> float:
    """The unstable stacking fault energy (mJ/m^2): the top of the generalized stacking fault
    energy curve (:func:`stacking_fault_curve`) between the perfect crystal and the intrinsic
    fault (fcc, hcp) or the next perfect crystal (bcc), the barrier a dislocation's core must
    cross to slip (with the surface energy, Rice's measure of ductility). Found near half-way
    (the top lies there, within a few percent of the slip, in fcc, hcp and bcc metals): the curve
    at 0.4, 0.5 and 0.6 of the slip, then at the top of the parabola through them; the highest
    of the four."""
    perfect, slip = _slip_column(symbol, lattice, lattice_constant, layers, c)
    shifts = [0.4, 0.5, 0.6]
    energies = _fault_energies(perfect, [t * slip for t in shifts], calc, relax, fmax, normal_only=True)
    curvature, slope, _ = np.polyfit(shifts, energies, 2)
    if curvature < 0:  # the perfect column's energy is the calculator's from the first call
        top = float(np.clip(-slope / (2.0 * curvature), 0.3, 0.7))
        energies += _fault_energies(perfect, [top * slip], calc, relax, fmax, normal_only=True)
    return float(max(energies))


def stacking_fault_curve(symbol: str, lattice: str, lattice_constant: float, calc, shifts, layers: int = 12,
                         relax: bool = True, fmax: float = 1e-3, c: Optional[float] = None) -> list:
    """The generalized stacking fault energy (mJ/m^2) at each of ``shifts`` (fractions of the
    slip: fcc's partial a/6 <112> on (111), hcp's a/3 <10-10> on (0001), bcc's a/2 <111> on
    (110)): a periodic column of ``layers`` planes whose third cell vector is shifted by that
    much, the ions relaxed only normal to the planes (the usual constraint: relaxed in the plane
    they would slide back), against the perfect column. 0 and 1 of bcc's slip are the perfect
    crystal; 1 of fcc's and hcp's is the intrinsic fault of :func:`stacking_fault_energy`."""
    perfect, slip = _slip_column(symbol, lattice, lattice_constant, layers, c)
    return _fault_energies(perfect, [float(t) * slip for t in shifts], calc, relax, fmax, normal_only=True)


def _slip_column(symbol: str, lattice: str, lattice_constant: float, layers: int, c: Optional[float]):
    """The perfect column of :func:`stacking_fault_curve` and its slip vector."""
    if lattice not in SLIP_PLANES:
        raise ValueError(f"stacking faults are computed for {tuple(SLIP_PLANES)} elements, not {lattice}")
    perfect = plane_column(symbol, lattice, SLIP_PLANES[lattice], lattice_constant, layers, c)
    return perfect, slip_vector(perfect, lattice)


def _fault_energies(perfect: Atoms, shifts, calc, relax: bool, fmax: float, normal_only: bool) -> list:
    """The energy (mJ/m^2) of the column ``perfect`` with its third cell vector shifted by each
    of ``shifts`` (vectors), above ``perfect``'s; ions relaxed (with ``normal_only``, along z)."""
    from ase.constraints import FixCartesian

    perfect.calc = calc
    if relax:
        relax_ions(perfect, fmax, 200)
    reference = perfect.get_potential_energy()
    area = float(np.linalg.norm(np.cross(perfect.cell[0], perfect.cell[1])))
    energies = []
    for shift in shifts:
        faulted = perfect.copy()
        cell = faulted.cell.array.copy()
        cell[2] += shift  # across the periodic boundary
        faulted.set_cell(cell, scale_atoms=False)
        if normal_only:
            faulted.set_constraint(FixCartesian(range(len(faulted)), mask=(True, True, False)))
        faulted.calc = calc
        if relax:
            relax_ions(faulted, fmax, 200)
        energies.append(float((faulted.get_potential_energy() - reference) / area * MJ_PER_M2))
    return energies


def slip_vector(column: Atoms, lattice: str) -> np.ndarray:
    """The slip of :func:`stacking_fault_curve` on the planes of ``column``: bcc's shortest in-plane
    cell vector (a/2 <111> on (110)); in fcc and hcp the partial +-(a1 + a2) / 3 of the column's
    60-degree cell that stacks the next periodic image's first plane on a site other than the
    last plane's (the other sign would put one plane right above the other)."""
    cell = column.cell.array
    if lattice == "bcc":
        return cell[int(np.argmin(np.linalg.norm(cell[:2], axis=1)))].copy()
    bottom, top = (column.positions[np.argsort(column.positions[:, 2])[k]] for k in (0, -1))
    for sign in (1.0, -1.0):
        shift = sign * (cell[0] + cell[1]) / 3.0
        offset = np.linalg.solve(cell[:2, :2].T, (bottom + shift - top)[:2])  # in units of a1, a2
        if not np.allclose(offset, np.round(offset), atol=1e-6):
            return shift
    raise ValueError("no partial Burgers vector stacks this column's planes")  # not a close-packed column


def stacking_faults(atoms: Atoms, lattice_constant: float, calc, relax: bool = True,
                    step=lambda what: None) -> Dict[str, float]:
    """The stacking faults of the element crystal ``atoms`` (at equilibrium; fcc, hcp or bcc,
    :func:`element_lattice`) at ``lattice_constant`` (hcp: ``a``, and ``c`` from the cell):
    ``stacking_fault`` (fcc and hcp: :func:`stacking_fault_energy`) and
    ``unstable_stacking_fault`` (:func:`unstable_stacking_fault_energy`), mJ/m^2; ``step(what)``
    after each."""
    lattice = element_lattice(atoms)
    if lattice not in SLIP_PLANES:
        raise ValueError("stacking faults are computed for fcc, hcp and bcc elements (their conventional cubic "
                         "cell, or hcp's two-atom hexagonal cell)")
    symbol = atoms.get_chemical_symbols()[0]
    c = float(atoms.cell.lengths()[2]) if lattice == "hcp" else None
    out: Dict[str, float] = {}
    if lattice != "bcc":
        out["stacking_fault"] = stacking_fault_energy(symbol, lattice_constant, calc, relax=relax, lattice=lattice,
                                                      c=c)
        step("stacking fault")
    out["unstable_stacking_fault"] = unstable_stacking_fault_energy(symbol, lattice, lattice_constant, calc,
                                                                    relax=relax, c=c)
    step("unstable stacking fault")
    return out


def stacking_fault_steps(atoms: Atoms) -> int:
    """How many ``step`` calls :func:`stacking_faults` makes for ``atoms``."""
    return {"fcc": 2, "hcp": 2, "bcc": 1}.get(element_lattice(atoms), 0)


@dataclass
class VacancyCells:
    """The relaxed cells that every vacancy and solute energy of an element crystal starts from:
    the ``perfect`` supercell (``N`` sites) and its energy, the ``vacancy`` cell (site 0 emptied,
    :func:`vacancy_hop`) and its energy, and the nearest-neighbour distance ``nearest`` (Å) by
    which a relaxation's moves are judged. :func:`vacancy_cells` makes them;
    :func:`vacancy_energies` and :func:`mlff.physics.solutes.solute_energies` take them, so a
    crystal's two relaxations are done once for both."""

    perfect: Atoms
    e_perfect: float
    vacancy: Atoms
    e_vacancy: float
    nearest: float


def vacancy_cells(atoms: Atoms, calc, repeat: Optional[tuple] = None, min_length: float = 8.0,
                  relax: bool = True, fmax: float = 1e-3) -> VacancyCells:
    """The :class:`VacancyCells` of the element crystal ``atoms`` (its cell at equilibrium):
    ``atoms`` repeated ``repeat`` times (default: along each cell vector the fewest times that
    make it at least ``min_length`` Å: 2x2x2 conventional fcc cells of aluminium, 32 sites), the
    ions relaxed at the fixed cell unless not ``relax``. :class:`UnstableCrystal` when relaxing
    the vacancy moves an atom more than :data:`MAX_SHIFT` of the nearest-neighbour distance."""
    if not is_element(atoms):
        raise ValueError(f"vacancies are computed in element crystals, not {atoms.get_chemical_formula()}")
    perfect = atoms.repeat(repeat or vacancy_supercell(atoms, min_length))
    perfect.calc = calc
    if relax:  # a crystal at equilibrium: nothing to do, except for free coordinates the cell left
        relax_ions(perfect, fmax)
    nearest = float(perfect.get_distances(0, range(1, len(perfect)), mic=True).min())
    vacancy, _ = vacancy_hop(perfect)
    vacancy.calc = calc
    if relax:
        relax_on_sites(vacancy, fmax, nearest, "the vacancy")
    return VacancyCells(perfect, float(perfect.get_potential_energy()), vacancy,
                        float(vacancy.get_potential_energy()), nearest)


def vacancy_energies(atoms: Atoms, calc, repeat: Optional[tuple] = None, min_length: float = 8.0,
                     relax: bool = True, fmax: float = 1e-3, migration: Optional[bool] = None,
                     step: Callable[[str], None] = lambda what: None,
                     cells: Optional[VacancyCells] = None) -> Dict[str, float]:
    """The vacancy of the element crystal ``atoms`` (its cell at equilibrium) in a supercell of
    ``N`` sites (``repeat``, ``min_length``, ``relax``, ``fmax``: :func:`vacancy_cells`, or its
    ``cells`` when given), the ions relaxed at the fixed cell:

    - ``vacancy``: the formation energy ``E(N - 1) - (N - 1) / N * E(N)`` (eV);
    - ``vacancy_sites``: ``N`` (the vacancy sees its periodic images, so a reference must use
      the same supercell);
    - with ``migration`` (by default for fcc, bcc and hcp elements), the barrier (eV) of each
      nearest-neighbour hop into the vacancy of :data:`HOPS`: ``vacancy_migration`` (fcc, bcc),
      ``vacancy_migration_basal`` and ``vacancy_migration_out_of_basal`` (hcp; other crystals:
      ``vacancy_migration`` of the first nearest neighbour). Each is the energy of the saddle
      (:func:`vacancy_hop`: the hopping atom held on the plane half-way between the two sites
      while all relax) above the relaxed vacancy.

    ``step(what)`` after the vacancy and after each saddle. :class:`UnstableCrystal` when relaxing
    moves an atom more than :data:`MAX_SHIFT` of the nearest-neighbour distance, or a saddle
    relaxes below the vacancy."""
    if not is_element(atoms):
        raise ValueError(f"the vacancy formation energy is computed for element crystals, not "
                         f"{atoms.get_chemical_formula()}")
    lattice = element_lattice(atoms)
    if migration is None:
        migration = lattice is not None
    if cells is None:
        cells = vacancy_cells(atoms, calc, repeat, min_length, relax, fmax)
    perfect = cells.perfect
    hops = vacancy_hops(perfect, lattice)
    n = len(perfect)
    out = {"vacancy": float(cells.e_vacancy - (n - 1) / n * cells.e_perfect), "vacancy_sites": n}
    step("vacancy")
    for name, hop in (hops.items() if migration else ()):
        saddle = vacancy_hop(perfect, hop)[1]
        saddle.calc = calc
        if relax:
            relax_on_sites(saddle, fmax, cells.nearest, "the half-way point of a vacancy hop")
        out[name] = float(saddle.get_potential_energy() - cells.e_vacancy)
        if out[name] <= 0:
            raise UnstableCrystal(f"the half-way point of a vacancy hop relaxed {-out[name]:.3f} eV below the "
                                  f"vacancy: it is no saddle, and the crystal no stable lattice")
        step(name.replace("_", " "))
    return out


def relax_and_measure(atoms: Atoms, fmax: float) -> float:
    """Relax the ions of ``atoms`` (at the fixed cell); the farthest any moved (Å)."""
    start = atoms.get_positions()
    relax_ions(atoms, fmax)
    return float(np.linalg.norm(atoms.get_positions() - start, axis=1).max())


def relax_on_sites(atoms: Atoms, fmax: float, nearest: float, what: str) -> None:
    """Relax the ions of ``atoms``; :class:`UnstableCrystal` if one moves more than
    :data:`MAX_SHIFT` of the nearest-neighbour distance ``nearest`` from where it started."""
    shift = relax_and_measure(atoms, fmax)
    if shift > MAX_SHIFT * nearest:
        raise UnstableCrystal(f"relaxing {what} moved an atom {shift:.2f} Å, {100 * shift / nearest:.0f} % of the "
                              f"nearest-neighbour distance: the crystal does not hold its sites (mechanically "
                              f"unstable?), so its defect energies are not computed")


def vacancy_hops(perfect: Atoms, lattice: Optional[str] = None) -> Dict[str, int]:
    """The hops of :func:`vacancy_energies` in the ``perfect`` supercell of a ``lattice`` element
    crystal (:func:`element_lattice`), by name (:data:`HOPS`): the index, in the cell without
    atom 0, of the nearest neighbour of site 0 (the first in index order) that hops into it. In
    hcp the nearest within site 0's basal plane (``vacancy_migration_basal``) and the nearest
    out of it (``vacancy_migration_out_of_basal``); otherwise the nearest of all."""
    vectors = perfect.get_distances(0, range(1, len(perfect)), mic=True, vector=True)
    lengths = np.linalg.norm(vectors, axis=1)
    if lattice == "hcp":  # c along z (element_lattice): a basal neighbour lies at the same height
        basal = np.abs(vectors[:, 2]) < 1e-3 * lengths.min()
        kinds = dict(zip(HOPS["hcp"], (basal, ~basal)))
    else:
        kinds = {HOPS["fcc"][0]: np.ones(len(lengths), dtype=bool)}
    hops = {}
    for name, among in kinds.items():
        shortest = lengths[among].min()
        hops[name] = int(np.flatnonzero(among & (lengths < shortest + 1e-6))[0])
    return hops


def vacancy_hop(perfect: Atoms, hop: Optional[int] = None) -> Tuple[Atoms, Atoms]:
    """The cells of :func:`vacancy_energies` from the ``perfect`` supercell of an element crystal:
    the vacancy (atom 0 removed) and the saddle of a hop into it, where atom ``hop`` (an index in
    the cell without atom 0; by default the first nearest neighbour of site 0) sits half-way
    between its site and the vacant one, held on the plane through that point normal to the
    hop (``FixedPlane``). A symmetry of the crystal swaps the two sites and maps that plane onto
    itself (inversion through the half-way point in fcc, bcc and hcp out of the basal plane; a
    mirror in hcp's basal plane), so the minimum-energy path crosses the plane at its top, and
    relaxing all atoms, the hopping one within the plane, finds that saddle. Under inversion the
    hopping atom stays half-way; in hcp's basal plane it moves sideways, off the straight line
    (the tests check both against a climbing-image NEB, to 1 meV)."""
    from ase.constraints import FixedPlane

    vectors = perfect.get_distances(0, range(1, len(perfect)), mic=True, vector=True)
    if hop is None:
        lengths = np.linalg.norm(vectors, axis=1)
        hop = int(np.flatnonzero(lengths < lengths.min() + 1e-6)[0])
    defect = perfect.copy()
    del defect[0]
    saddle = defect.copy()
    saddle.positions[hop] = perfect.positions[0] + 0.5 * vectors[hop]
    saddle.set_constraint(FixedPlane(hop, vectors[hop]))
    return defect, saddle


def vacancy_supercell(atoms: Atoms, min_length: float = 8.0) -> Tuple[int, int, int]:
    """How many times :func:`vacancy_energies` repeats ``atoms`` along each cell vector:
    the fewest that make it at least ``min_length`` Å (2x2x2 for fcc aluminium's cubic cell)."""
    return tuple(max(1, int(np.ceil(min_length / length - 1e-9))) for length in atoms.cell.lengths())


def plane_column(symbol: str, lattice: str, facet: str, lattice_constant: float, layers: int,
                 c: Optional[float] = None) -> Atoms:
    """A periodic column of ``layers`` ``facet`` layers of the ``lattice`` (fcc, bcc or hcp) element
    ``symbol``, the layers stacked along z (ASE's ``fcc111``, ``fcc100``, ``bcc110``, ``bcc100``,
    ``hcp0001``: one atom per plane; ``hcp10m10``: two planes per layer, closely spaced); the layer
    count must keep the stacking periodic (a multiple of 3 for fcc (111), of 2 otherwise). hcp
    takes its ``c`` (Å) besides ``a`` (``lattice_constant``)."""
    from ase import build

    if lattice not in FACETS or facet not in FACETS[lattice]:
        raise ValueError(f"surface energies are computed for the facets {FACETS}, not {lattice} ({facet})")
    period = 3 if (lattice, facet) == ("fcc", "111") else 2  # ABC or AB stacking
    if layers % period:
        raise ValueError(f"a periodic column of {lattice} ({facet}) planes needs a multiple of {period} layers, "
                         f"not {layers}")
    builder = getattr(build, f"{lattice}{facet.replace('-', 'm')}")
    if lattice != "hcp":
        return builder(symbol, size=(1, 1, layers), a=lattice_constant, vacuum=None, periodic=True)
    if c is None:
        raise ValueError(f"the hcp ({facet}) column needs c besides a")
    size = (1, 1, layers) if facet == "0001" else (1, 2, layers)  # ASE's prism cell: two atoms along c
    return builder(symbol, size=size, a=lattice_constant, c=c, vacuum=None, periodic=True)


def surface_cells(symbol: str, lattice: str, facet: str, lattice_constant: float, layers: int = 6,
                  vacuum: float = 8.0, c: Optional[float] = None) -> Tuple[Atoms, Atoms]:
    """The cells of :func:`surface_energy`: a periodic column of ``layers`` ``facet`` layers (the
    bulk, :func:`plane_column`) and the same atoms as a slab with ``vacuum`` Å on either side,
    cut between the two planes farthest apart (the termination that breaks the fewest bonds:
    for hcp (10-10) between the pairs of closely spaced planes; where all spacings are equal,
    at the column's periodic boundary)."""
    column = plane_column(symbol, lattice, facet, lattice_constant, layers, c)
    height = float(column.cell[2, 2])
    heights = np.sort(column.positions[:, 2])
    gaps = np.diff(np.append(heights, heights[0] + height))  # the last: across the periodic boundary
    if gaps.max() > gaps[-1] + 1e-6:
        above = heights[int(np.argmax(gaps)) + 1]
        column.positions[:, 2] = np.mod(column.positions[:, 2] - above + 1e-6, height) - 1e-6
    slab = column.copy()
    slab.center(vacuum=vacuum, axis=2)
    return column, slab


def surface_energy(symbol: str, lattice: str, facet: str, lattice_constant: float, calc, layers: int = 6,
                   vacuum: float = 8.0, relax: bool = True, fmax: float = 1e-3, slab_calc=None,
                   c: Optional[float] = None) -> float:
    """The energy (mJ/m^2) of the ``facet`` surface (:data:`FACETS`: ``"111"``, ``"100"``,
    ``"110"``, ``"0001"``, ``"10-10"``) of the ``lattice`` (fcc, bcc or hcp, with its ``c``) element
    ``symbol``: a slab of ``layers`` layers, periodic in its plane with ``vacuum`` Å on either
    side, against the same column of layers without the vacuum (the bulk, with the same in-plane
    cell and atoms), divided by its two faces; the slab's ions relaxed at the fixed cell.
    ``slab_calc``: a calculator for the slab (a DFT code's, with one k-point along the normal),
    ``calc`` otherwise."""
    column, slab = surface_cells(symbol, lattice, facet, lattice_constant, layers, vacuum, c)
    column.calc = calc
    slab.calc = slab_calc if slab_calc is not None else calc
    if relax:
        relax_ions(slab, fmax)
    area = float(np.linalg.norm(np.cross(column.cell[0], column.cell[1])))
    return float((slab.get_potential_energy() - column.get_potential_energy()) / (2.0 * area) * MJ_PER_M2)


def defect_energies(atoms: Atoms, lattice_constant: float, calc, relax: bool = True,
                    step=lambda what: None, cells: Optional[VacancyCells] = None) -> Dict[str, float]:
    """The vacancy of the element crystal ``atoms`` (at equilibrium: :func:`vacancy_energies`, with
    its migration energies for fcc, bcc and hcp elements) and, for fcc, bcc and hcp elements, the
    surface energies of :data:`FACETS` at ``lattice_constant`` (hcp: ``a``, and ``c`` from the
    cell of ``atoms``): ``{"vacancy": eV, "vacancy_sites": N, "vacancy_migration": eV,
    "surface_111": mJ/m^2, ...}``; ``step(what)`` after each. ``cells``: the vacancy's relaxed
    :class:`VacancyCells`, when already made."""
    out: Dict[str, float] = dict(vacancy_energies(atoms, calc, relax=relax, step=step, cells=cells))
    lattice = element_lattice(atoms)
    c = float(atoms.cell.lengths()[2]) if lattice == "hcp" else None
    for facet in FACETS.get(lattice, ()):
        out[f"surface_{facet}"] = surface_energy(atoms.get_chemical_symbols()[0], lattice, facet, lattice_constant,
                                                 calc, relax=relax, c=c)
        step(f"surface ({facet})")
    return out


def defect_steps(atoms: Atoms) -> int:
    """How many ``step`` calls :func:`defect_energies` makes for ``atoms``."""
    lattice = element_lattice(atoms)
    return 1 + len(HOPS.get(lattice, ())) + len(FACETS.get(lattice, ()))
