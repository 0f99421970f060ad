"""Generate datasets/ethanol_pyscf.extxyz: ethanol labelled with real DFT (PySCF, PBE/def2-SVP,
density fitting): energy, forces and dipole. The molecule of the development suite
(``benchmarks/defaults_sweep.py``), with its ground state in the data:

- ``minimum``: frame 0 is the PBE/def2-SVP minimum (ASE BFGS on the DFT forces to 1 meV/Å from
  ASE's ethanol geometry);
- ``near_minimum``: the minimum with random displacements of 0.01-0.05 Å (the low-energy tail a
  fitted potential must reproduce);
- ``md500``: the geometries of ``ethanol_xtb.extxyz`` (GFN2-xTB Langevin MD at 500 K, every 10 fs),
  labelled again with DFT.

Frame ``i`` is built deterministically from its index and appended in order, so an interrupted run
resumes where the file ends. Needs ``pip install pyscf`` (``.[datagen]``); ~7 s per frame on one
core:

    OMP_NUM_THREADS=1 python datasets/generate_ethanol_pyscf.py [--frames 200]
"""

import argparse
import os
import sys
import time

import numpy as np
from ase import units
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.io import read, write

HERE = os.path.dirname(os.path.abspath(__file__))
NEAR_MINIMUM = 30  # frames 1..NEAR_MINIMUM are displaced minima; the rest are MD geometries


def label(atoms):
    """PBE/def2-SVP energy (eV), forces (eV/Å) and dipole (e Å) of a molecule (as water_pyscf)."""
    from pyscf import dft, gto

    mol = gto.M(atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
                basis="def2-svp", unit="Angstrom", verbose=0)
    mf = dft.RKS(mol, xc="pbe").density_fit()
    mf.grids.level = 2
    mf.conv_tol = 1e-10
    energy = mf.kernel()
    if not mf.converged:
        raise RuntimeError("SCF did not converge")
    gradient = mf.nuc_grad_method().kernel()
    dipole_debye = mf.dip_moment(verbose=0)
    return energy * units.Hartree, -gradient * units.Hartree / units.Bohr, dipole_debye * units.Debye


class _DFTCalculator(Calculator):
    """:func:`label` as an ASE calculator, for the geometry optimisation."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces, _ = label(self.atoms)
        self.results = {"energy": energy, "forces": forces}


def minimum():
    """The PBE/def2-SVP minimum of ethanol (BFGS to 1 meV/Å)."""
    from ase.optimize import BFGS

    atoms = molecule("CH3CH2OH")
    atoms.calc = _DFTCalculator()
    BFGS(atoms, logfile=None).run(fmax=0.001, steps=200)
    atoms.calc = None
    return atoms


def structure(index, ground, md):
    """Frame ``index``'s geometry and kind, from the minimum ``ground`` and the MD frames ``md``."""
    if index == 0:
        return ground.copy(), "minimum"
    if index <= NEAR_MINIMUM:
        rng = np.random.default_rng(index)
        atoms = ground.copy()
        atoms.positions += rng.normal(0.0, rng.uniform(0.01, 0.05), atoms.positions.shape)
        return atoms, "near_minimum"
    source = md[index - NEAR_MINIMUM - 1]
    atoms = source.copy()
    atoms.calc = None
    for key in list(atoms.arrays):
        if key not in ("numbers", "positions"):
            del atoms.arrays[key]
    atoms.info = {}
    return atoms, "md500"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--out", default=os.path.join(HERE, "ethanol_pyscf.extxyz"))
    args = parser.parse_args(argv)
    done = read(args.out, ":") if os.path.exists(args.out) else []
    ground = done[0].copy() if done else minimum()
    md = read(os.path.join(HERE, "ethanol_xtb.extxyz"), ":")
    print(f"{len(done)} frames in {args.out}; labelling {max(0, args.frames - len(done))} more", flush=True)
    for index in range(len(done), args.frames):
        atoms, kind = structure(index, ground, md)
        start = time.time()
        energy, forces, dipole = label(atoms)
        atoms.info.update(energy=energy, dipole=dipole, config_type=kind, index=index)
        atoms.arrays["forces"] = forces
        write(args.out, atoms, format="extxyz", append=True)
        print(f"frame {index} {kind}: {time.time() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
