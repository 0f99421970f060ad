"""Labelled structures from files (anything ASE reads: extxyz, VASP OUTCAR / vasprun.xml, ...),
from pymatgen's ``Vasprun`` and from in-memory ASE ``Atoms`` / pymatgen ``Structure`` lists.

Every reader returns :class:`Frame` objects in ASE units and sign conventions: energy in eV,
forces in eV/Å, stress as a 3x3 matrix in eV/Å^3 with ASE's sign (positive = tensile).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from ase import Atoms, units
from ase.stress import voigt_6_to_full_3x3_stress


@dataclass
class Frame:
    """One labelled structure. ``source`` says where it came from (``file:index``)."""

    atoms: Atoms
    energy: Optional[float]
    forces: Optional[np.ndarray]  # (n, 3) eV/Å
    stress: Optional[np.ndarray]  # (3, 3) eV/Å^3, ASE sign
    source: str
    dipole: Optional[np.ndarray] = None  # (3,) e Å
    charge: float = 0.0  # total charge, e
    weight: float = 1.0  # factor on the frame's terms in the training loss (``config_weight`` in extxyz)


@dataclass
class LabelKeys:
    """Where the labels live: ``atoms.info`` / ``atoms.arrays`` keys, or the attached calculator's
    results (ASE puts ``energy``, ``free_energy``, ``forces`` and ``stress`` of extxyz and VASP files
    there)."""

    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    dipole_key: str = "dipole"
    charge_key: str = "charge"
    weight_key: str = "config_weight"  # the frame's loss weight in ``atoms.info`` (1 where absent)


def _label(atoms: Atoms, key: str, per_atom: bool):
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return np.asarray(store[key], dtype=np.float64)
    results = getattr(atoms.calc, "results", None) or {}
    if key in results:
        return np.asarray(results[key], dtype=np.float64)
    return None


def frame_from_atoms(atoms: Atoms, keys: LabelKeys, source: str) -> Frame:
    energy = _label(atoms, keys.energy_key, per_atom=False)
    forces = _label(atoms, keys.forces_key, per_atom=True)
    stress = _label(atoms, keys.stress_key, per_atom=False)
    if stress is not None:
        stress = voigt_6_to_full_3x3_stress(stress) if stress.size == 6 else stress.reshape(3, 3)
    dipole = _label(atoms, keys.dipole_key, per_atom=False)
    charge = _label(atoms, keys.charge_key, per_atom=False)
    weight = loss_weight(atoms.info.get(keys.weight_key, 1.0), f"{source}: {keys.weight_key}")
    plain = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if "config_type" in atoms.info:  # the structure family (extxyz convention), for per-family errors
        plain.info["config_type"] = str(atoms.info["config_type"])
    return Frame(plain, None if energy is None else float(energy), forces, stress, source,
                 None if dipole is None else dipole.reshape(3), 0.0 if charge is None else float(charge), weight)


def loss_weight(value, what: str) -> float:
    """``value`` as a loss weight: a finite number >= 0, else an error naming ``what``."""
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is {value!r}, not a number; a loss weight is a number >= 0 (1: plain)") from None
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"{what} is {weight}; a loss weight is a finite number >= 0 (0 leaves the frame out "
                         "of the loss, 1 is plain)")
    return weight


def read_file(path: str | os.PathLike, keys: LabelKeys = LabelKeys(), index: str = ":") -> list[Frame]:
    """All frames (e.g. every ionic step of an OUTCAR / vasprun.xml) of a file ASE can read."""
    from ase.io import read

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    try:
        images = read(path, index=index)
    except Exception as error:
        raise ValueError(f"could not read {path!r} with ASE ({error}); is it extxyz, OUTCAR, vasprun.xml...?") from error
    images = images if isinstance(images, list) else [images]
    return [frame_from_atoms(atoms, keys, f"{path}:{i}") for i, atoms in enumerate(images)]


def read_vasprun_pymatgen(path: str | os.PathLike, energy_key: str = "energy") -> list[Frame]:
    """Every ionic step of a vasprun.xml through pymatgen's ``Vasprun``.

    Energies follow ASE's reading of the same file: ``free_energy`` is ``e_fr_energy`` without the
    ``PSTRESS`` pV term, ``energy`` adds the sigma->0 correction of the last electronic step.
    VASP's stress (kBar, positive = compressive) becomes eV/Å^3 with ASE's sign.
    """
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp import Vasprun

    path = os.fspath(path)
    run = Vasprun(path, parse_dos=False, parse_eigen=False, parse_projected_eigen=False,
                  parse_potcar_file=False)
    pstress = float(run.parameters.get("PSTRESS", 0.0)) * 0.1 * units.GPa  # kBar -> eV/Å^3
    frames = []
    for i, step in enumerate(run.ionic_steps):
        atoms = AseAtomsAdaptor.get_atoms(step["structure"])
        free_energy = step["e_fr_energy"] - pstress * atoms.get_volume()
        last = step["electronic_steps"][-1]
        energy = {"free_energy": free_energy,
                  "energy": free_energy + last["e_0_energy"] - last["e_fr_energy"]}[energy_key]
        stress = -0.1 * units.GPa * np.asarray(step["stress"], dtype=np.float64)
        plain = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
        frames.append(Frame(plain, float(energy), np.asarray(step["forces"], dtype=np.float64), stress,
                            f"{path}:{i}"))
    return frames


def frames_from_structures(structures: Iterable, keys: LabelKeys = LabelKeys(), name: str = "memory") -> list[Frame]:
    """In-memory ASE ``Atoms`` (labels in ``info``/``arrays`` or a calculator) or pymatgen
    ``Structure``/``Molecule`` (labels in ``properties``, e.g. ``energy``, ``forces``, ``stress``)."""
    frames = []
    for i, item in enumerate(structures):
        if not isinstance(item, Atoms):
            from pymatgen.io.ase import AseAtomsAdaptor

            atoms = AseAtomsAdaptor.get_atoms(item)
            for key, value in getattr(item, "properties", {}).items():
                atoms.info[key] = value
            if keys.forces_key in getattr(item, "site_properties", {}):
                atoms.arrays[keys.forces_key] = np.asarray(item.site_properties[keys.forces_key])
            item = atoms
        frames.append(frame_from_atoms(item, keys, f"{name}:{i}"))
    return frames


def read_frames(source, keys: LabelKeys = LabelKeys(), reader: str = "ase") -> list[Frame]:
    """Frames from a path (``reader="ase"`` or ``"pymatgen"`` for vasprun.xml; a ``.db`` path is a
    dataset of ``mlff data convert`` or another ASE database, see :mod:`mlff.data.store`), a list of
    paths, or a list of in-memory structures."""
    if isinstance(source, (str, os.PathLike)):
        if os.fspath(source).endswith(".db"):  # a converted dataset (mlff data convert) or any ASE database
            from .store import read_store

            return read_store(source, keys)
        if reader == "pymatgen":
            return read_vasprun_pymatgen(source, keys.energy_key)
        if reader != "ase":
            raise ValueError(f"unknown reader {reader!r}: use 'ase' or 'pymatgen'")
        return read_file(source, keys)
    source = list(source)
    if source and all(isinstance(s, (str, Path)) for s in source):
        return [f for path in source for f in read_frames(path, keys, reader)]
    return frames_from_structures(source, keys)


def write_frames(path: str | os.PathLike, frames: Sequence[Frame]) -> None:
    """Write ``frames`` as extxyz with their labels under the default keys (``energy``, ``forces``,
    ``stress``, ``dipole``, ``charge``, ``config_weight`` where not 1), so that :func:`read_frames` with the default
    :class:`LabelKeys` (and ``mlff evaluate``) reads them back as they are."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    images = []
    for frame in frames:
        atoms = frame.atoms.copy()
        results = {"energy": frame.energy, "forces": frame.forces, "stress": frame.stress}
        atoms.calc = SinglePointCalculator(atoms, **{k: v for k, v in results.items() if v is not None})
        if frame.dipole is not None:
            atoms.info["dipole"] = np.asarray(frame.dipole)
        if frame.charge:
            atoms.info["charge"] = frame.charge
        if frame.weight != 1.0:
            atoms.info[LabelKeys.weight_key] = frame.weight
        images.append(atoms)
    write(os.fspath(path), images, format="extxyz")


def describe(frames: Sequence[Frame]) -> dict:
    """A dataset summary: frames, atoms, elements, energy per atom and force ranges (a converted
    dataset's from its frame table)."""
    from . import frame_table  # (it reads Frame from here)

    table = frame_table.table_of(frames)
    if table is not None:
        return frame_table.describe(table)
    natoms, e_per_atom, elements = [], [], {}
    with_stress, force_values, force_squares, force_max = 0, 0, 0.0, 0.0
    for f in frames:  # one pass, nothing kept per atom (a dataset read from disk stays on disk)
        natoms.append(len(f.atoms))
        if f.energy is not None:
            e_per_atom.append(f.energy / len(f.atoms))
        if f.forces is not None and f.forces.size:
            force_values += f.forces.size
            force_squares += float(np.sum(np.square(f.forces)))
            force_max = max(force_max, float(np.abs(f.forces).max()))
        with_stress += f.stress is not None
        for s in f.atoms.get_chemical_symbols():
            elements[s] = elements.get(s, 0) + 1
    natoms = np.array(natoms)
    return {
        "frames": len(natoms),
        "atoms": int(natoms.sum()),
        "atoms_per_frame": [int(natoms.min()), int(natoms.max())],
        "elements": dict(sorted(elements.items())),
        "frames_with_stress": with_stress,
        "energy_per_atom_eV": [float(min(e_per_atom)), float(max(e_per_atom))] if e_per_atom else None,
        "max_abs_force_eV_per_A": force_max if force_values else None,
        "rms_force_eV_per_A": float(np.sqrt(force_squares / force_values)) if force_values else None,
    }


def summary_line(summary: dict) -> str:
    """:func:`describe`'s elements, energy range and largest force in one short line."""
    energies = summary["energy_per_atom_eV"]
    text = f"elements {summary['elements']}, " + (
        "no energies" if energies is None else f"energy/atom {energies[0]:.3f} to {energies[1]:.3f} eV")
    if summary["max_abs_force_eV_per_A"] is not None:
        text += f", max |F| {summary['max_abs_force_eV_per_A']:.2f} eV/Å"
    return text
