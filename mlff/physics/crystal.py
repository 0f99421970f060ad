"""Bulk properties of a crystal near equilibrium: the equation of state, elastic constants and
phonons, and :func:`crystal_properties`, which computes them (and, on request, the defect
energies of :mod:`mlff.physics.defects`) in one call."""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Dict, Optional, Sequence

import numpy as np
from ase import Atoms, units

from .cells import lattice_kind, relax as relax_ions
from .defects import (UnstableCrystal, defect_energies, defect_steps, is_element, stacking_fault_steps, stacking_faults,
                      vacancy_cells)
from .report import ELASTIC
from .solutes import check_solutes, solute_energies, solute_steps

GPA = units.GPa  # eV/Å^3 per GPa
# high-symmetry points (fractional, in the reciprocal basis of the conventional cubic cell)
SPECIAL_POINTS = {"G": (0.0, 0.0, 0.0), "X": (0.5, 0.0, 0.0), "M": (0.5, 0.5, 0.0), "R": (0.5, 0.5, 0.5)}


def _cell_values(cell: np.ndarray, hexagonal: bool) -> Dict[str, object]:
    """``cell`` (3x3 list), ``lattice_constant`` (its first vector's length) and, for a hexagonal
    cell (the kind of the crystal given, which relaxation keeps to round-off), ``c_over_a``."""
    cell = np.asarray(cell)
    out: Dict[str, object] = {"lattice_constant": float(np.linalg.norm(cell[0])), "cell": cell.tolist()}
    if hexagonal:
        out["c_over_a"] = float(np.linalg.norm(cell[2]) / np.linalg.norm(cell[0]))
    return out


def _strained(atoms: Atoms, calc, deformation: np.ndarray, relax: bool, fmax: float, shape: bool = False) -> Atoms:
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ deformation.T, scale_atoms=True)
    strained.calc = calc
    if relax:
        relax_ions(strained, fmax, 200, shape)
    return strained


def equation_of_state(atoms: Atoms, calc, span: float = 0.04, points: int = 9, relax: bool = True,
                      fmax: float = 1e-3, step: Callable[[str], None] = lambda what: None,
                      recentre: int = 3, shape: bool = False) -> Dict[str, object]:
    """Energy per atom against volume per atom for uniform scalings of the cell by up to ``span``
    in volume (with ``shape``, each cell's shape then relaxed at its volume, with the ions), and
    the Birch-Murnaghan fit: ``volume`` (Å^3/atom), ``energy`` (eV/atom), ``bulk_modulus`` (GPa),
    ``cell`` (Å, 3x3: the scanned cell nearest the equilibrium, scaled to its volume), its
    ``c_over_a`` when it is hexagonal, and ``lattice_constant`` (Å: that cell's first vector, which is the lattice constant for a
    conventional cubic cell or a hexagonal one; for a primitive cubic cell it is that cell's
    vector, e.g. a/sqrt(2) for fcc and diamond). When the fitted minimum lies outside the scanned
    volumes (a starting cell too far from this potential's equilibrium), the scan moves towards
    it, by at most twice its width each time, up to ``recentre`` times."""
    from ase.eos import EquationOfState

    n = len(atoms)
    start = atoms.get_volume() / n
    centre = 1.0  # volume of the scan's middle, relative to the given cell
    for attempt in range(recentre + 1):
        volumes, energies, cells = [], [], []
        for scale in np.linspace(centre * (1.0 - span), centre * (1.0 + span), points):
            strained = _strained(atoms, calc, np.eye(3) * scale ** (1.0 / 3.0), relax, fmax, shape and relax)
            volumes.append(strained.get_volume() / n)
            energies.append(strained.get_potential_energy() / n)
            cells.append(strained.cell.array.copy())
            step(f"volume {len(volumes)}/{points}" + (f" (scan {attempt + 1})" if attempt else ""))
        try:
            v0, e0, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit(warn=False)  # checked below
        except (RuntimeError, ValueError):  # no minimum to fit: move to the lowest point scanned
            v0 = volumes[int(np.argmin(energies))]
        else:
            if min(volumes) <= v0 <= max(volumes):
                nearest = int(np.argmin(np.abs(np.asarray(volumes) - v0)))
                cell = cells[nearest] * (v0 / volumes[nearest]) ** (1.0 / 3.0)
                return {"volume": float(v0), "energy": float(e0), "bulk_modulus": float(b / GPA),
                        **_cell_values(cell, lattice_kind(atoms) == "hexagonal"),
                        "curve": {"volume": [float(v) for v in volumes], "energy": [float(e) for e in energies]}}
        target = min(max(v0 / start, centre * (1.0 - 2.0 * span)), centre * (1.0 + 2.0 * span))
        centre = float(target)
    raise ValueError(f"the energy minimum lies outside the scanned volumes ({min(volumes):.3f}-{max(volumes):.3f} "
                     f"Å^3/atom, fit {v0:.3f}) after {recentre + 1} scans moving towards it: the potential has no "
                     "minimum near this cell (check the structure, or that the potential was fitted to it)")


def _stress_derivatives(atoms: Atoms, calc, components: Sequence[str], strain: float, relax: bool, fmax: float,
                        step: Callable[[str], None]) -> Dict[str, np.ndarray]:
    """d(stress)/d(strain) (3x3, GPa) for each strain component (``xx``, ``zz``, ``yz``, ...) by
    central differences at +-``strain`` (shear as a symmetric engineering strain of 2 * strain),
    with the ions relaxed at each strain."""
    axes = {"x": 0, "y": 1, "z": 2}
    out = {}
    for name in components:
        i, j = axes[name[0]], axes[name[1]]
        stresses = []
        for sign in (1.0, -1.0):
            deformation = np.eye(3)
            deformation[i, j] += sign * strain
            if i != j:
                deformation[j, i] += sign * strain
            stresses.append(_strained(atoms, calc, deformation, relax, fmax).get_stress(voigt=False))
            step(f"strain {'+' if sign > 0 else '-'}{name}")
        # ASE's stress is +dE/dstrain / V: positive under tension, so sigma = C epsilon
        out[name] = (stresses[0] - stresses[1]) / (2.0 * strain * (1.0 if i == j else 2.0)) / GPA
    return out


def cubic_elastic_constants(atoms: Atoms, calc, strain: float = 0.005, relax: bool = True,
                            fmax: float = 1e-3, step: Callable[[str], None] = lambda what: None) -> Dict[str, float]:
    """C11, C12, C44 (GPa) of a cubic crystal at its given cell, from central differences of the
    stress under +-``strain`` (xx for C11 and C12, yz for C44), ions relaxed at each strain."""
    d = _stress_derivatives(atoms, calc, ("xx", "yz"), strain, relax, fmax, step)
    return {"C11": float(d["xx"][0, 0]), "C12": float(0.5 * (d["xx"][1, 1] + d["xx"][2, 2])),
            "C44": float(d["yz"][1, 2])}


def hexagonal_elastic_constants(atoms: Atoms, calc, strain: float = 0.005, relax: bool = True,
                                fmax: float = 1e-3, step: Callable[[str], None] = lambda what: None
                                ) -> Dict[str, float]:
    """C11, C12, C13, C33, C44 (GPa) of a hexagonal crystal (c along z, :func:`lattice_kind`) at
    its given cell, from the stresses under +-``strain`` along xx (C11, C12, C13), zz (C33, C13:
    the two C13 are averaged) and yz (C44), ions relaxed at each strain (hcp's two atoms move
    under some of them)."""
    d = _stress_derivatives(atoms, calc, ("xx", "zz", "yz"), strain, relax, fmax, step)
    return {"C11": float(d["xx"][0, 0]), "C12": float(d["xx"][1, 1]),
            "C13": float(0.5 * (d["xx"][2, 2] + 0.5 * (d["zz"][0, 0] + d["zz"][1, 1]))),
            "C33": float(d["zz"][2, 2]), "C44": float(d["yz"][1, 2])}


def stiffness_matrix(constants: Dict[str, float]) -> np.ndarray:
    """The 6x6 Voigt stiffness matrix (GPa) of cubic (C11, C12, C44) or hexagonal (also C13,
    C33; C66 = (C11 - C12) / 2) elastic constants."""
    c11, c12, c44 = constants["C11"], constants["C12"], constants["C44"]
    c13, c33 = constants.get("C13", c12), constants.get("C33", c11)
    c66 = 0.5 * (c11 - c12) if "C33" in constants else c44
    return np.array([[c11, c12, c13, 0, 0, 0], [c12, c11, c13, 0, 0, 0], [c13, c13, c33, 0, 0, 0],
                     [0, 0, 0, c44, 0, 0], [0, 0, 0, 0, c44, 0], [0, 0, 0, 0, 0, c66]], dtype=float)


def mechanical_instability(constants: Dict[str, float]) -> Optional[str]:
    """Why a crystal with these elastic constants is mechanically unstable (Born's criterion: the
    stiffness matrix is not positive definite, so a strain lowers its energy; for cubic crystals
    C11 - C12, C11 + 2 C12 or C44 not positive), or ``None`` when it is stable."""
    lowest = float(np.linalg.eigvalsh(stiffness_matrix(constants))[0])
    if lowest > 0:
        return None
    shown = ", ".join(f"{name} {constants[name]:.1f}" for name in ELASTIC if name in constants)
    return (f"mechanically unstable: a strain lowers its energy (the stiffness matrix's lowest eigenvalue is "
            f"{lowest:.1f} GPa; {shown} GPa)")


def phonon_frequencies(atoms: Atoms, calc, points: Sequence[str] = ("G", "X"), supercell=(2, 2, 2),
                       delta: float = 0.01) -> Dict[str, list]:
    """Phonon frequencies (THz, sorted; imaginary ones negative) at high-symmetry points of the
    conventional cubic cell ``atoms``, by finite displacements in a ``supercell``."""
    import contextlib
    import io

    from ase.phonons import Phonons

    # ASE prints a warning per q-point with (numerically) imaginary acoustic modes at Gamma
    with tempfile.TemporaryDirectory(prefix="mlff_phonons_") as directory, contextlib.redirect_stdout(io.StringIO()):
        phonons = Phonons(atoms, calc, supercell=supercell, delta=delta, name=os.path.join(directory, "ph"))
        phonons.run()
        phonons.read(acoustic=True)
        out = {}
        for name in points:
            energies = phonons.band_structure([SPECIAL_POINTS[name]])[0]  # eV
            to_thz = units._e / units._hplanck * 1e-12  # eV -> THz
            out[name] = sorted(float((e.real if abs(e.imag) < 1e-12 else -abs(e.imag)) * to_thz)
                               for e in np.asarray(energies, dtype=complex))
    return out


def crystal_properties(atoms: Atoms, calc, elastic: bool = True, phonons: Sequence[str] = (),
                       relax: bool = True, stacking_fault: bool = False, defects: bool = False,
                       solutes: Sequence[str] = (),
                       progress: Optional[Callable[[int, int, str], None]] = None) -> Dict[str, object]:
    """The properties of the module docstring for one crystal (its cell near equilibrium):
    the equation of state (with ``relax``, ions relaxed, and the shape too where the cell is
    not cubic), and at the fitted equilibrium the elastic constants (cubic and hexagonal
    cells), the phonon frequencies at ``phonons`` (e.g. ``("G", "X")``, cubic cells) and
    with ``stacking_fault`` the stacking faults of :func:`mlff.physics.defects.stacking_faults`
    (mJ/m^2: fcc's intrinsic fault and hcp's basal I2 as ``stacking_fault``, and for fcc, hcp
    and bcc elements the unstable fault, ``unstable_stacking_fault``), with ``defects`` the
    vacancy formation energy (element crystals), its migration energies and the surface energies
    (fcc, bcc and hcp elements) of :func:`mlff.physics.defects.defect_energies`, unless the
    crystal is mechanically unstable (:func:`mechanical_instability` of its elastic constants, or
    atoms that leave their sites while relaxing: :class:`UnstableCrystal`): then
    ``defects_skipped`` says why instead. ``solutes`` (element symbols; fcc, bcc and hcp element
    crystals): their substitution, solute-vacancy binding and migration energies of
    :func:`mlff.physics.solutes.solute_energies`, likewise skipped for an unstable crystal.
    ``progress(done, total, what)`` is called after each of its relaxations and calculations
    (a progress bar's hook)."""
    atoms = atoms.copy()
    kind = lattice_kind(atoms)
    shape = relax and kind != "cubic"
    points = 9
    strains = {"cubic": 4, "hexagonal": 6}.get(kind, 0) if elastic else 0
    total = points + int(relax) + strains + int(bool(phonons))
    total += (stacking_fault_steps(atoms) if stacking_fault else 0) + (defect_steps(atoms) if defects else 0)
    solutes = check_solutes(atoms, solutes) if solutes else []
    total += solute_steps(atoms, solutes) if solutes else 0
    done = [0]

    def step(what: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total, what)

    if phonons and kind != "cubic":
        raise ValueError("phonons at high-symmetry points need the conventional cubic cell")
    if stacking_fault and not stacking_fault_steps(atoms):
        raise ValueError("stacking faults are computed for fcc, hcp and bcc elements (their conventional cubic cell, "
                         "or hcp's two-atom hexagonal cell)")
    if defects and not is_element(atoms):
        raise ValueError("defect energies are computed for element crystals")
    eos = equation_of_state(atoms, calc, points=points, relax=relax, step=step, shape=shape)
    atoms.set_cell(np.asarray(eos["cell"]), scale_atoms=True)
    atoms.calc = calc
    if relax:
        relax_ions(atoms, 1e-3, 200, shape)
        step("relaxed at the equilibrium volume")
        eos.update(_cell_values(atoms.cell.array, kind == "hexagonal"))
    out: Dict[str, object] = {"formula": atoms.get_chemical_formula(), "atoms": len(atoms), **eos}
    if strains and kind == "cubic":
        out.update(cubic_elastic_constants(atoms, calc, relax=relax, step=step))
    elif strains:
        out.update(hexagonal_elastic_constants(atoms, calc, relax=relax, step=step))
    if phonons:
        out["phonons"] = phonon_frequencies(atoms, calc, phonons)
        step("phonons")
    if stacking_fault:
        out.update(stacking_faults(atoms, eos["lattice_constant"], calc, relax=relax, step=step))
    if defects or solutes:
        reason = mechanical_instability(out) if strains else None
        try:
            # the perfect supercell and the vacancy, relaxed once for both
            cells = vacancy_cells(atoms, calc, relax=relax) if reason is None else None
            if reason is None and defects:
                out.update(defect_energies(atoms, eos["lattice_constant"], calc, relax=relax, step=step, cells=cells))
            if reason is None and solutes:
                out.update(solute_energies(atoms, solutes, calc, relax=relax, step=step, cells=cells))
        except UnstableCrystal as error:
            reason = str(error)
        if reason is not None:  # the energies would be those of whatever the crystal relaxes into
            out["defects_skipped"] = reason
            for _ in range(total - done[0]):
                step("no defect energies")
    return out
