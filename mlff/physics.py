"""Physical properties of a potential, next to a reference: what to check before trusting a fit.

Mean errors on test frames can look excellent while a crystal's ground state sits far off or its
stiffness is half the reference. :func:`crystal_properties` computes, for a crystal and any ASE
calculator (an mlff model, EMT, a DFT code):

- the energy-volume curve (cell scaled uniformly, ions relaxed where the structure has free
  coordinates), fitted by a Birch-Murnaghan equation of state: equilibrium volume, lattice
  constant, energy per atom and bulk modulus;
- for cubic crystals, the elastic constants C11, C12 and C44 from stresses at +-``strain``
  (central differences) with the ions relaxed at each strain (the relaxed-ion constants DFT
  codes report);
- optionally, phonon frequencies at high-symmetry points (finite displacements in a supercell,
  ASE's ``Phonons``).

:func:`compare` sets a model's numbers beside a reference's (computed with the reference
calculator, or read from a JSON file of an earlier :func:`crystal_properties` run with DFT) and
gives each property's error. Units: Å, eV/atom, GPa, THz.
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


def _relax_ions(atoms: Atoms, fmax: float, steps: int) -> None:
    """Relax the ions at a fixed cell (nothing to do when no force is above ``fmax``)."""
    from ase.optimize import BFGS

    if np.abs(atoms.get_forces()).max() <= fmax:
        return
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps)


def _strained(atoms: Atoms, calc, deformation: np.ndarray, relax: bool, fmax: float) -> Atoms:
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ deformation.T, scale_atoms=True)
    strained.calc = calc
    if relax:
        _relax_ions(strained, fmax, 200)
    return strained


def equation_of_state(atoms: Atoms, calc, span: float = 0.04, points: int = 9, relax: bool = True,
                      fmax: float = 1e-3, step: Callable[[str], None] = lambda what: None,
                      recentre: int = 3) -> Dict[str, object]:
    """Energy per atom against volume per atom for uniform scalings of the cell by up to ``span``
    in volume, and the Birch-Murnaghan fit: ``volume`` (Å^3/atom), ``energy`` (eV/atom), ``bulk_modulus``
    (GPa) and ``lattice_constant`` (Å: the first cell vector's length scaled to the equilibrium, which
    is the lattice constant for a conventional cubic cell; for a primitive cell it is that cell's
    vector, e.g. a/sqrt(2) for fcc and diamond). When the fitted minimum lies outside the scanned
    volumes (a starting cell too far from this potential's equilibrium), the scan moves towards
    it, by at most twice its width each time, up to ``recentre`` times."""
    from ase.eos import EquationOfState

    n = len(atoms)
    start = atoms.get_volume() / n
    centre = 1.0  # volume of the scan's middle, relative to the given cell
    for attempt in range(recentre + 1):
        volumes, energies = [], []
        for scale in np.linspace(centre * (1.0 - span), centre * (1.0 + span), points):
            strained = _strained(atoms, calc, np.eye(3) * scale ** (1.0 / 3.0), relax, fmax)
            volumes.append(strained.get_volume() / n)
            energies.append(strained.get_potential_energy() / n)
            step(f"volume {len(volumes)}/{points}" + (f" (scan {attempt + 1})" if attempt else ""))
        try:
            v0, e0, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit(warn=False)  # checked below
        except (RuntimeError, ValueError):  # no minimum to fit: move to the lowest point scanned
            v0 = volumes[int(np.argmin(energies))]
        else:
            if min(volumes) <= v0 <= max(volumes):
                a0 = float(np.linalg.norm(atoms.cell.array[0])) * (v0 / start) ** (1.0 / 3.0)
                return {"volume": float(v0), "energy": float(e0), "bulk_modulus": float(b / GPA),
                        "lattice_constant": a0,
                        "curve": {"volume": [float(v) for v in volumes], "energy": [float(e) for e in energies]}}
        target = min(max(v0 / start, centre * (1.0 - 2.0 * span)), centre * (1.0 + 2.0 * span))
        centre = float(target)
    raise ValueError(f"the energy minimum lies outside the scanned volumes ({min(volumes):.3f}-{max(volumes):.3f} "
                     f"Å^3/atom, fit {v0:.3f}) after {recentre + 1} scans moving towards it: the potential has no "
                     "minimum near this cell (check the structure, or that the potential was fitted to it)")


def cubic_elastic_constants(atoms: Atoms, calc, strain: float = 0.005, relax: bool = True,
                            fmax: float = 1e-3, step: Callable[[str], None] = lambda what: None) -> Dict[str, float]:
    """C11, C12, C44 (GPa) of a cubic crystal at its given cell, from central differences of the
    stress under +-``strain`` (xx for C11 and C12, yz for C44), ions relaxed at each strain."""
    stresses = {}
    for name, component in (("xx", (0, 0)), ("yz", (1, 2))):
        for sign in (1.0, -1.0):
            deformation = np.eye(3)
            i, j = component
            if i == j:
                deformation[i, i] += sign * strain
            else:  # a symmetric shear: engineering strain 2 * strain
                deformation[i, j] += sign * strain
                deformation[j, i] += sign * strain
            strained = _strained(atoms, calc, deformation, relax, fmax)
            stresses[name, sign] = strained.get_stress(voigt=False)
            step(f"strain {'+' if sign > 0 else '-'}{name}")
    d_xx = (stresses["xx", 1.0] - stresses["xx", -1.0]) / (2.0 * strain)
    d_yz = (stresses["yz", 1.0] - stresses["yz", -1.0]) / (2.0 * 2.0 * strain)
    # ASE's stress is +dE/dstrain / V: positive under tension, so sigma = C epsilon
    return {"C11": float(d_xx[0, 0] / GPA), "C12": float(0.5 * (d_xx[1, 1] + d_xx[2, 2]) / GPA),
            "C44": float(d_yz[1, 2] / GPA)}


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
                       relax: bool = True,
                       progress: Optional[Callable[[int, int, str], None]] = None) -> Dict[str, object]:
    """The properties of the module docstring for one crystal (its cell near equilibrium): the
    equation of state, and at the fitted equilibrium the elastic constants (cubic cells) and
    the phonon frequencies at ``phonons`` (e.g. ``("G", "X")``). ``progress(done, total, what)``
    is called after each of its relaxations and calculations (a progress bar's hook)."""
    atoms = atoms.copy()
    cell = atoms.cell.array
    cubic = bool(np.allclose(cell, np.eye(3) * cell[0, 0], atol=1e-6 * cell[0, 0]))
    points = 9
    total = points + int(relax) + 4 * int(elastic and cubic) + int(bool(phonons))
    done = [0]

    def step(what: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total, what)

    eos = equation_of_state(atoms, calc, points=points, relax=relax, step=step)
    scale = (eos["volume"] * len(atoms) / atoms.get_volume()) ** (1.0 / 3.0)
    atoms.set_cell(atoms.cell.array * scale, scale_atoms=True)
    atoms.calc = calc
    if relax:
        _relax_ions(atoms, 1e-3, 200)
        step("relaxed at the equilibrium volume")
    out: Dict[str, object] = {"formula": atoms.get_chemical_formula(), "atoms": len(atoms), **eos}
    if elastic and cubic:
        out.update(cubic_elastic_constants(atoms, calc, relax=relax, step=step))
    if phonons:
        if not cubic:
            raise ValueError("phonons at high-symmetry points need the conventional cubic cell")
        out["phonons"] = phonon_frequencies(atoms, calc, phonons)
        step("phonons")
    return out


SCALARS = ("lattice_constant", "energy", "bulk_modulus", "C11", "C12", "C44")
UNITS = {"lattice_constant": "Å", "energy": "eV/atom", "bulk_modulus": "GPa", "C11": "GPa", "C12": "GPa",
         "C44": "GPa", "volume": "Å^3/atom"}


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
        names = [k for k in ("bulk_modulus", "C11", "C12", "C44") if k in model]
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


def parse_crystal(text: str) -> Atoms:
    """``Cu:fcc:3.61``, ``Si:diamond:5.47``, ``NaCl:rocksalt:5.64``: the conventional cubic cell
    (ASE's ``bulk(..., cubic=True)``), or any file ASE reads."""
    from ase.build import bulk

    if os.path.isfile(text):
        from ase.io import read

        return read(text)
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"crystal {text!r}: write NAME:STRUCTURE:A, e.g. Cu:fcc:3.61 or Si:diamond:5.47, "
                         "or give a structure file")
    try:
        return bulk(parts[0], parts[1], a=float(parts[2]), cubic=True)
    except (ValueError, KeyError, RuntimeError) as error:
        raise ValueError(f"crystal {text!r}: {error}") from None


def read_reference(path: str, formula: str) -> Optional[Dict[str, object]]:
    """The reference properties of ``formula`` from a JSON file written by ``mlff physics --json``
    (``{"crystals": [{"formula": ..., ...}, ...]}``) or a list of such records."""
    import json

    with open(path) as handle:
        document = json.load(handle)
    records = document.get("crystals", []) if isinstance(document, dict) else document
    for record in records:
        if record.get("formula") == formula:
            return record.get("reference", record)
    return None
