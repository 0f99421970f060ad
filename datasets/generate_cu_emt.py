"""Generate datasets/cu_emt.extxyz: Cu labelled with ASE's EMT (energy, forces, stress).

Frames: strained and rattled bulk (32 atoms), a vacancy (31 atoms), a (111) surface slab (36 atoms,
periodic in-plane only, so no stress label), and Langevin MD at 1200 K. Deterministic (seeded).
Run: python datasets/generate_cu_emt.py   (about 30 s)
"""

import os

import numpy as np
from ase import units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.io import write
from ase.md.langevin import Langevin

A0 = 3.59  # EMT's Cu lattice constant is about 3.59 Å


def labelled(atoms, kind):
    atoms.calc = EMT()
    out = atoms.copy()
    out.info["energy"] = atoms.get_potential_energy()
    out.arrays["forces"] = atoms.get_forces()
    if atoms.pbc.all():
        out.info["stress"] = atoms.get_stress(voigt=False)
    out.info["config_type"] = kind
    return out


def main(path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "cu_emt.extxyz")):
    rng = np.random.default_rng(2024)
    frames = []
    for _ in range(100):
        atoms = bulk("Cu", "fcc", a=A0, cubic=True).repeat(2)
        strain = np.eye(3) + rng.uniform(-0.04, 0.04) * np.eye(3) + 0.02 * rng.standard_normal((3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        frames.append(labelled(atoms, "bulk_strained"))
    for _ in range(40):
        atoms = bulk("Cu", "fcc", a=A0, cubic=True).repeat(2)
        del atoms[int(rng.integers(len(atoms)))]
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        frames.append(labelled(atoms, "vacancy"))
    for _ in range(40):
        atoms = fcc111("Cu", size=(3, 3, 4), a=A0, vacuum=6.0)
        atoms.pbc = (True, True, False)
        atoms.info.pop("adsorbate_info", None)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        frames.append(labelled(atoms, "surface"))
    atoms = bulk("Cu", "fcc", a=A0 * 1.01, cubic=True).repeat(2)
    atoms.calc = EMT()
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=1200, friction=0.02, fixcm=False, rng=np.random.default_rng(7))
    for _ in range(120):
        dyn.run(10)
        frames.append(labelled(atoms.copy(), "md_1200K"))
    write(path, frames, format="extxyz")
    print(f"wrote {len(frames)} frames to {path}")


if __name__ == "__main__":
    main()
