"""Setting a model's properties beside a reference's: the comparison and its tables, relative
phase energies, figures, and reading crystals and reference values from the command line."""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np
from ase import Atoms

from .solutes import SOLUTE_PREFIXES

ELASTIC = ("C11", "C12", "C13", "C33", "C44")
SURFACES = ("surface_111", "surface_100", "surface_110", "surface_0001", "surface_10-10")
MIGRATIONS = ("vacancy_migration", "vacancy_migration_basal", "vacancy_migration_out_of_basal")
SCALARS = (("lattice_constant", "c_over_a", "energy", "bulk_modulus") + ELASTIC
           + ("stacking_fault", "unstable_stacking_fault", "vacancy") + MIGRATIONS + SURFACES)
UNITS = {"lattice_constant": "Å", "c_over_a": "", "energy": "eV/atom", "bulk_modulus": "GPa", "volume": "Å^3/atom",
         "stacking_fault": "mJ/m^2", "unstable_stacking_fault": "mJ/m^2", "vacancy": "eV",
         **{name: "eV" for name in MIGRATIONS}, **{name: "GPa" for name in ELASTIC},
         **{name: "mJ/m^2" for name in SURFACES}}


def is_solute_key(key: str) -> bool:
    """Whether ``key`` is a solute's property (:mod:`mlff.physics.solutes`: ``substitution_Mg``, ...)."""
    return any(key.startswith(prefix + "_") for prefix in SOLUTE_PREFIXES)


def unit(key: str) -> str:
    """The unit of a property of :data:`SCALARS` or of a solute (eV)."""
    return "eV" if is_solute_key(key) else UNITS.get(key, "")


def scalar_keys(properties: Dict[str, object]) -> list:
    """The scalar properties in ``properties``, in a report's order: :data:`SCALARS`, then the
    solutes' (:mod:`mlff.physics.solutes`) as computed."""
    return [key for key in SCALARS if key in properties] + [key for key in properties if is_solute_key(key)]


def compare(model: Dict[str, object], reference: Dict[str, object]) -> Dict[str, Dict[str, float]]:
    """Each property both have: the model's and the reference's value, the difference (model minus
    reference; meV/atom for energies) and the relative error (``None`` for energies, whose zero is
    arbitrary, and for the solutes' substitution and solution energies, which may lie near zero).
    Phonon frequencies are compared band by band (THz, largest difference). Vacancy and solute
    energies of supercells of different sizes (``vacancy_sites``, ``solute_sites``) are not
    compared."""
    rows: Dict[str, Dict[str, float]] = {}
    for key in scalar_keys(model):
        kind = "vacancy_sites" if key.startswith("vacancy") else ("solute_sites" if is_solute_key(key) else None)
        if kind and reference.get(kind, model.get(kind)) != model.get(kind):
            continue
        if key in model and key in reference:
            mine, ref = float(model[key]), float(reference[key])
            difference = 1e3 * (mine - ref) if key == "energy" else mine - ref
            absolute = key == "energy" or key.startswith(("substitution_", "solution_"))
            rows[key] = {"model": mine, "reference": ref, "difference": difference,
                         "relative": None if absolute or ref == 0 else (mine - ref) / abs(ref)}
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
    width = max([18] + [len(key) + 1 for key in rows])
    lines.append(f"{'property':<{width}}{'model':>11}{'reference':>11}{'difference':>12} {'unit':<9}{'relative':>9}")
    for key, row in rows.items():
        unit_ = "meV/atom" if key == "energy" else ("THz" if key.startswith("phonons") else unit(key))
        relative = "" if row["relative"] is None else f"{100 * row['relative']:+.1f} %"
        lines.append(f"{key:<{width}}{row['model']:>11.4g}{row['reference']:>11.4g}{row['difference']:>+12.3g} "
                     f"{unit_:<9}{relative:>9}")
    return "\n".join(lines)


def add_solution_energies(records: Sequence[Dict[str, object]]) -> list:
    """Turn the solutes' substitution energies in ``records`` (``{"crystal", "formula", "model",
    "reference"?, "comparison"?}`` as ``mlff physics`` builds them) into solution energies
    (:func:`mlff.physics.solutes.solution_energies`): for the model and the reference alike,
    each solute's energy per atom is that of its lowest crystal among the records of that
    element; the comparisons are redone. Returns ``(crystal, solute)`` of the substitutions
    whose solute has no crystal among the records."""
    from ase.formula import Formula

    from .solutes import solution_energies

    missing = []
    for side in ("model", "reference"):
        lowest: Dict[str, float] = {}
        for record in records:
            values = record.get(side)
            elements = Formula(str(record["formula"])).count()
            if isinstance(values, dict) and "energy" in values and len(elements) == 1:
                element = next(iter(elements))
                lowest[element] = min(lowest.get(element, np.inf), float(values["energy"]))
        for record in records:
            values = record.get(side)
            if not isinstance(values, dict):
                continue
            values.update(solution_energies(values, lowest))
            if side == "model":
                missing += [(record["crystal"], key[len("substitution_"):]) for key in values
                            if key.startswith("substitution_") and key[len("substitution_"):] not in lowest]
    for record in records:
        if isinstance(record.get("reference"), dict):
            record["comparison"] = compare(record["model"], record["reference"])
    return missing


def solution_table(records: Sequence[Dict[str, object]]) -> str:
    """The solution energies of :func:`add_solution_energies`, a row per host crystal and solute
    (model, reference, difference; eV), or ``""`` when there are none."""
    lines = []
    for record in records:
        model, reference = record["model"], record.get("reference") or {}
        for key in [k for k in model if k.startswith("solution_")]:
            if not lines:
                lines += ["solution energies (eV; a solute's energy from its lowest crystal above)",
                          f"{'host':<24}{'solute':<8}{'model':>10}{'reference':>11}{'difference':>12}"]
            ref = reference.get(key)
            lines.append(f"{str(record['crystal']):<24}{key[len('solution_'):]:<8}{model[key]:>10.3f}"
                         + ("" if ref is None else f"{ref:>11.3f}{model[key] - ref:>+12.3f}"))
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
        from ..calculators import MLFFCalculator

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
