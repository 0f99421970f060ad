"""Physical properties of a potential, next to a reference: what to check before trusting a fit.

Mean errors on test frames can look excellent while a crystal's ground state sits far off or its
stiffness is half the reference. :func:`crystal_properties` computes, for a crystal and any ASE
calculator (an mlff model, EMT, a DFT code):

- the energy-volume curve (cell scaled uniformly, ions relaxed where the structure has free
  coordinates), fitted by a Birch-Murnaghan equation of state: equilibrium volume, lattice
  constant, energy per atom and bulk modulus;
- for cubic crystals, the elastic constants C11, C12 and C44, and for hexagonal ones (hcp,
  wurtzite) C11, C12, C13, C33 and C44, from stresses at +-``strain`` (central differences) with
  the ions relaxed at each strain (the relaxed-ion constants DFT codes report);
- for cells that are not cubic, the shape is relaxed at each volume too (c/a of hexagonal
  crystals, reported as ``c_over_a``), so that phases compare at their own equilibria (hcp
  against fcc);
- optionally, phonon frequencies at high-symmetry points (finite displacements in a supercell,
  ASE's ``Phonons``), and for fcc elements the intrinsic stacking fault energy.

:func:`compare` sets a model's numbers beside a reference's (computed with the reference
calculator, or read from a JSON file of an earlier :func:`crystal_properties` run with DFT) and
gives each property's error. Units: Å, eV/atom, GPa, THz, mJ/m^2.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Dict, Optional, Sequence

import numpy as np
from ase import Atoms, units

GPA = units.GPa  # eV/Å^3 per GPa
# high-symmetry points (fractional, in the reciprocal basis of the conventional cubic cell)
SPECIAL_POINTS = {"G": (0.0, 0.0, 0.0), "X": (0.5, 0.0, 0.0), "M": (0.5, 0.5, 0.0), "R": (0.5, 0.5, 0.5)}


def lattice_kind(atoms: Atoms) -> str:
    """``cubic`` (the cell is a * identity), ``hexagonal`` (a1 along x, a2 of the same length at
    120 degrees in the xy plane, c along z: ASE's hcp and wurtzite cells, the orientation the
    hexagonal elastic constants assume) or ``other``."""
    cell = atoms.cell.array
    a = float(np.linalg.norm(cell[0]))
    tol = 1e-6 * a
    if np.allclose(cell, np.eye(3) * cell[0, 0], atol=tol):
        return "cubic"
    along_x = abs(cell[0, 1]) < tol and abs(cell[0, 2]) < tol
    along_z = abs(cell[2, 0]) < tol and abs(cell[2, 1]) < tol
    in_plane = abs(cell[1, 2]) < tol and abs(np.linalg.norm(cell[1]) - a) < tol
    if along_x and along_z and in_plane and abs(float(cell[0] @ cell[1]) + 0.5 * a * a) < tol * a:
        return "hexagonal"
    return "other"


def _cell_values(cell: np.ndarray, hexagonal: bool) -> Dict[str, object]:
    """``cell`` (3x3 list), ``lattice_constant`` (its first vector's length) and, for a hexagonal
    cell (the kind of the crystal given, which relaxation keeps to round-off), ``c_over_a``."""
    cell = np.asarray(cell)
    out: Dict[str, object] = {"lattice_constant": float(np.linalg.norm(cell[0])), "cell": cell.tolist()}
    if hexagonal:
        out["c_over_a"] = float(np.linalg.norm(cell[2]) / np.linalg.norm(cell[0]))
    return out


def _relax(atoms: Atoms, fmax: float, steps: int, shape: bool = False) -> None:
    """Relax the ions at a fixed cell, and with ``shape`` the cell's shape at a fixed volume too
    (nothing to do when no force, nor stress times volume per atom, is above ``fmax``)."""
    from ase.optimize import BFGS

    target = atoms
    if shape:
        try:
            from ase.filters import FrechetCellFilter as CellFilter
        except ImportError:  # ASE < 3.23 (Debian's, under which the DFT references in datasets/ run)
            from ase.constraints import ExpCellFilter as CellFilter

        target = CellFilter(atoms, constant_volume=True)
    if np.abs(target.get_forces()).max() <= fmax:
        return
    BFGS(target, logfile=None).run(fmax=fmax, steps=steps)


def _strained(atoms: Atoms, calc, deformation: np.ndarray, relax: bool, fmax: float, shape: bool = False) -> Atoms:
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ deformation.T, scale_atoms=True)
    strained.calc = calc
    if relax:
        _relax(strained, fmax, 200, shape)
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


MJ_PER_M2 = units._e * 1e20 * 1e3  # eV/Å^2 -> mJ/m^2


def is_fcc_element(atoms: Atoms) -> bool:
    """Whether ``atoms`` is the conventional cubic cell of an fcc element (4 atoms of one species)."""
    if len(atoms) != 4 or len(set(atoms.get_chemical_symbols())) != 1 or lattice_kind(atoms) != "cubic":
        return False
    scaled = np.round(np.mod(atoms.get_scaled_positions() - atoms.get_scaled_positions()[0], 1.0), 6) % 1.0
    return sorted(map(tuple, scaled)) == [(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)]


def stacking_fault_energy(symbol: str, lattice_constant: float, calc, layers: int = 12, relax: bool = True,
                          fmax: float = 1e-3) -> float:
    """The intrinsic stacking fault energy (mJ/m^2) of an fcc element at ``lattice_constant``: a
    periodic column of ``layers`` (111) planes (a multiple of 3; 12 puts the faults 12 planes
    apart) against the same column whose third cell vector is shifted by a partial Burgers
    vector (a/6 <112>), which leaves one fault (...ABCBCA...: two planes in hcp stacking) per
    cell; ions relaxed at the fixed cells. The stacking fault energy is what sets dislocation
    splitting and twinning in fcc metals; a fit that misses hcp against fcc misses it too."""
    from ase.build import fcc111

    if layers % 3:
        raise ValueError(f"layers must be a multiple of 3 (fcc's ABC stacking), not {layers}")
    perfect = fcc111(symbol, size=(1, 1, layers), a=lattice_constant, vacuum=None, periodic=True)
    faulted = perfect.copy()
    cell = faulted.cell.array.copy()
    cell[2] += (cell[0] + cell[1]) / 3.0  # the partial Burgers vector across the periodic boundary
    faulted.set_cell(cell, scale_atoms=False)
    energies = []
    for column in (perfect, faulted):
        column.calc = calc
        if relax:
            _relax(column, fmax, 200)
        energies.append(column.get_potential_energy())
    area = float(np.linalg.norm(np.cross(cell[0], cell[1])))
    return float((energies[1] - energies[0]) / area * MJ_PER_M2)


def crystal_properties(atoms: Atoms, calc, elastic: bool = True, phonons: Sequence[str] = (),
                       relax: bool = True, stacking_fault: bool = False,
                       progress: Optional[Callable[[int, int, str], None]] = None) -> Dict[str, object]:
    """The properties of the module docstring for one crystal (its cell near equilibrium): the
    equation of state (with ``relax``, ions relaxed, and the shape too where the cell is not
    cubic), and at the fitted equilibrium the elastic constants (cubic and hexagonal cells), the
    phonon frequencies at ``phonons`` (e.g. ``("G", "X")``, cubic cells) and with
    ``stacking_fault`` the intrinsic stacking fault energy (``stacking_fault``, mJ/m^2; fcc
    elements). ``progress(done, total, what)`` is called after each of its relaxations and
    calculations (a progress bar's hook)."""
    atoms = atoms.copy()
    kind = lattice_kind(atoms)
    shape = relax and kind != "cubic"
    points = 9
    strains = {"cubic": 4, "hexagonal": 6}.get(kind, 0) if elastic else 0
    total = points + int(relax) + strains + int(bool(phonons)) + int(stacking_fault)
    done = [0]

    def step(what: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total, what)

    if phonons and kind != "cubic":
        raise ValueError("phonons at high-symmetry points need the conventional cubic cell")
    if stacking_fault and not is_fcc_element(atoms):
        raise ValueError("the stacking fault energy is computed for fcc elements (their conventional cubic cell)")
    eos = equation_of_state(atoms, calc, points=points, relax=relax, step=step, shape=shape)
    atoms.set_cell(np.asarray(eos["cell"]), scale_atoms=True)
    atoms.calc = calc
    if relax:
        _relax(atoms, 1e-3, 200, shape)
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
        out["stacking_fault"] = stacking_fault_energy(atoms.get_chemical_symbols()[0], eos["lattice_constant"], calc,
                                                      relax=relax)
        step("stacking fault")
    return out


ELASTIC = ("C11", "C12", "C13", "C33", "C44")
SCALARS = ("lattice_constant", "c_over_a", "energy", "bulk_modulus") + ELASTIC + ("stacking_fault",)
UNITS = {"lattice_constant": "Å", "c_over_a": "", "energy": "eV/atom", "bulk_modulus": "GPa", "volume": "Å^3/atom",
         "stacking_fault": "mJ/m^2", **{name: "GPa" for name in ELASTIC}}


def compare(model: Dict[str, object], reference: Dict[str, object]) -> Dict[str, Dict[str, float]]:
    """Each property both have: the model's and the reference's value, the difference (model minus
    reference; meV/atom for energies) and the relative error (``None`` for energies, whose zero is
    arbitrary). Phonon frequencies are compared band by band (THz, largest difference)."""
    rows: Dict[str, Dict[str, float]] = {}
    for key in SCALARS:
        if key in model and key in reference:
            mine, ref = float(model[key]), float(reference[key])
            difference = 1e3 * (mine - ref) if key == "energy" else mine - ref
            rows[key] = {"model": mine, "reference": ref, "difference": difference,
                         "relative": None if key == "energy" else (mine - ref) / abs(ref)}
    for point, frequencies in (model.get("phonons") or {}).items():
        ref = (reference.get("phonons") or {}).get(point)
        if ref is not None and len(ref) == len(frequencies):
            difference = np.asarray(frequencies) - np.asarray(ref)
            k = int(np.argmax(np.abs(difference)))
            rows[f"phonons {point}"] = {"model": float(frequencies[k]), "reference": float(ref[k]),
                                        "difference": float(difference[k]),
                                        "relative": float(difference[k] / max(abs(ref[k]), 1e-9))}
    return rows


def comparison_table(rows: Dict[str, Dict[str, float]], title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'property':<18}{'model':>11}{'reference':>11}{'difference':>12} {'unit':<9}{'relative':>9}")
    for key, row in rows.items():
        unit = "meV/atom" if key == "energy" else ("THz" if key.startswith("phonons") else UNITS.get(key, ""))
        relative = "" if row["relative"] is None else f"{100 * row['relative']:+.1f} %"
        lines.append(f"{key:<18}{row['model']:>11.4g}{row['reference']:>11.4g}{row['difference']:>+12.3g} "
                     f"{unit:<9}{relative:>9}")
    return "\n".join(lines)


def phase_energies(records: Sequence[Dict[str, object]]) -> Dict[str, Dict[str, Dict[str, Optional[float]]]]:
    """Relative phase energies: for each composition with two or more crystals among ``records``
    (``{"crystal", "formula", "model", "reference"?}`` as ``mlff physics`` builds them), each
    crystal's equilibrium energy per atom above the composition's lowest, in meV/atom, for the
    model and (where every crystal of the composition has one) the reference, and their difference."""
    from ase.formula import Formula

    groups: Dict[str, list] = {}
    for record in records:
        groups.setdefault(str(Formula(str(record["formula"])).reduce()[0]), []).append(record)
    out: Dict[str, Dict[str, Dict[str, Optional[float]]]] = {}
    for composition, group in groups.items():
        if len(group) < 2:
            continue
        ours = np.array([float(r["model"]["energy"]) for r in group])
        known = all(isinstance(r.get("reference"), dict) and "energy" in r["reference"] for r in group)
        theirs = np.array([float(r["reference"]["energy"]) for r in group]) if known else None
        rows = {}
        for k, record in enumerate(group):
            mine = 1e3 * float(ours[k] - ours.min())
            ref = None if theirs is None else 1e3 * float(theirs[k] - theirs.min())
            rows[str(record["crystal"])] = {"model": mine, "reference": ref,
                                            "difference": None if ref is None else mine - ref}
        out[composition] = rows
    return out


def phase_table(phases: Dict[str, Dict[str, Dict[str, Optional[float]]]]) -> str:
    lines = []
    for composition, rows in phases.items():
        lines.append(f"{composition}: energy above the lowest crystal (meV/atom)")
        lines.append(f"{'crystal':<24}{'model':>10}{'reference':>11}{'difference':>12}")
        for crystal, row in rows.items():
            ref = "" if row["reference"] is None else f"{row['reference']:>11.1f}"
            diff = "" if row["difference"] is None else f"{row['difference']:>+12.1f}"
            lines.append(f"{crystal:<24}{row['model']:>10.1f}{ref:>11}{diff}")
    return "\n".join(lines)


def plot_report(records: Sequence[Dict[str, object]], out_dir: str | os.PathLike) -> list:
    """One PNG per crystal: its energy-volume curve (model and reference) and its elastic table as
    bars, model beside reference. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for record in records:
        model, reference = record["model"], record.get("reference") or {}
        figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
        for label, values, style in (("model", model, "o-"), ("reference", reference, "s--")):
            curve = values.get("curve") if isinstance(values, dict) else None
            if curve:
                left.plot(curve["volume"], curve["energy"], style, label=label, markersize=4)
        left.set_xlabel("volume (Å$^3$/atom)")
        left.set_ylabel("energy (eV/atom)")
        left.legend()
        names = [k for k in ("bulk_modulus",) + ELASTIC if k in model]
        x = np.arange(len(names))
        right.bar(x - 0.2, [model[k] for k in names], 0.4, label="model")
        if reference:
            right.bar(x + 0.2, [float(reference.get(k, np.nan)) for k in names], 0.4, label="reference")
        right.set_xticks(x, ["B" if k == "bulk_modulus" else k for k in names])
        right.set_ylabel("GPa")
        right.legend()
        figure.suptitle(f"{record['crystal']} ({record['formula']})")
        figure.tight_layout()
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(record["crystal"]))
        path = os.path.join(out_dir, f"physics_{safe}.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def reference_calculator(name: str, device: str = "cpu"):
    """A reference by name: ``emt`` (ASE's EMT, for the example data) or the path of another mlff
    model file."""
    if name.lower() == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if os.path.isfile(name):
        from .calculators import MLFFCalculator

        return MLFFCalculator(name, device=device)
    raise ValueError(f"reference {name!r} is neither 'emt' nor a model file; for DFT references compute "
                     "mlff.physics.crystal_properties with your DFT calculator once and pass its JSON "
                     "with --reference-values")


HEXAGONAL = ("hcp", "wurtzite")  # ASE's bulk structures with no cubic cell: NAME:STRUCTURE:A[:C]


def parse_crystal(text: str) -> Atoms:
    """``Cu:fcc:3.61``, ``Si:diamond:5.47``, ``NaCl:rocksalt:5.64``: the conventional cubic cell
    (ASE's ``bulk(..., cubic=True)``); ``Mg:hcp:3.21`` or ``Mg:hcp:3.21:5.21`` (a, then c; ideal
    c/a = sqrt(8/3) when left out), ``ZnO:wurtzite:3.25:5.21``: the hexagonal cell; or any file
    ASE reads."""
    from ase.build import bulk

    if os.path.isfile(text):
        from ase.io import read

        return read(text)
    parts = text.split(":")
    hexagonal = len(parts) in (3, 4) and parts[1] in HEXAGONAL
    if len(parts) != 3 and not hexagonal:
        raise ValueError(f"crystal {text!r}: write NAME:STRUCTURE:A, e.g. Cu:fcc:3.61 or Si:diamond:5.47 "
                         "(hexagonal: NAME:STRUCTURE:A[:C], e.g. Mg:hcp:3.21:5.21), or give a structure file")
    try:
        lengths = [float(p) for p in parts[2:]]
        if hexagonal:
            return bulk(parts[0], parts[1], a=lengths[0], c=lengths[1] if len(lengths) > 1 else None)
        return bulk(parts[0], parts[1], a=lengths[0], cubic=True)
    except (ValueError, KeyError, RuntimeError) as error:
        raise ValueError(f"crystal {text!r}: {error}") from None


def structure_name(crystal: str) -> Optional[str]:
    """``NAME:STRUCTURE`` of a crystal written ``NAME:STRUCTURE:A[:C]`` (None for a file)."""
    parts = str(crystal).split(":")
    return ":".join(parts[:2]) if len(parts) >= 3 and not os.path.isfile(str(crystal)) else None


def read_reference(path: str, formula: str, crystal: Optional[str] = None) -> Optional[Dict[str, object]]:
    """The reference properties of ``formula`` from a JSON file written by ``mlff physics --json``
    (``{"crystals": [{"crystal": ..., "formula": ..., ...}, ...]}``) or a list of such records.

    With ``crystal`` (``Al:hcp:2.86``), a record that names its crystal must name the same element
    and structure (its lattice constant may differ): bcc and hcp cells both hold two atoms, and one
    must not be compared with the other. A record without a name matches by formula alone; its
    properties then come back with ``"matched_by": "formula"``, for the caller to say so."""
    import json

    with open(path) as handle:
        document = json.load(handle)
    records = document.get("crystals", []) if isinstance(document, dict) else document
    wanted = structure_name(crystal) if crystal is not None else None
    for record in records:
        named = structure_name(record.get("crystal") or (record.get("reference") or {}).get("crystal") or "")
        if record.get("formula") != formula or (wanted and named and named != wanted):
            continue
        found = record.get("reference", record)
        return dict(found, matched_by="formula") if wanted and not named else found
    return None
