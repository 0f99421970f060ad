"""Generate datasets/water_pyscf.extxyz: water molecules labelled with real DFT (PySCF, PBE/def2-SVP).

Geometries: the equilibrium molecule with random bond stretches, angle bends and rigid rotations.
Labels: PBE total energy (eV), forces (eV/Å) and dipole (e Å). Needs `pip install pyscf`
(about 1-2 minutes for 100 frames). Run: OMP_NUM_THREADS=1 python datasets/generate_water_pyscf.py
"""

import os

import numpy as np
from ase import Atoms, units
from ase.io import write


def water(rng):
    r1, r2 = 0.97 + rng.normal(0, 0.05, 2)
    angle = np.radians(104.5 + rng.normal(0, 6.0))
    positions = np.array([[0, 0, 0], [r1, 0, 0], [r2 * np.cos(angle), r2 * np.sin(angle), 0]])
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return Atoms("OH2", positions=positions @ (q * np.sign(np.diag(r))).T)


def label(atoms):
    from pyscf import dft, gto

    mol = gto.M(atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
                basis="def2-svp", unit="Angstrom", verbose=0)
    mf = dft.RKS(mol, xc="pbe").density_fit()
    mf.grids.level = 2
    energy = mf.kernel()
    gradient = mf.nuc_grad_method().kernel()
    dipole_debye = mf.dip_moment(verbose=0)
    return energy * units.Hartree, -gradient * units.Hartree / units.Bohr, dipole_debye * units.Debye


def main(path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "water_pyscf.extxyz"), frames=100):
    rng = np.random.default_rng(3)
    out = []
    for _ in range(frames):
        atoms = water(rng)
        energy, forces, dipole = label(atoms)
        atoms.info["energy"] = energy
        atoms.arrays["forces"] = forces
        atoms.info["dipole"] = dipole
        out.append(atoms)
    write(path, out, format="extxyz")
    print(f"wrote {len(out)} frames to {path}")


if __name__ == "__main__":
    main()
