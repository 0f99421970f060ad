"""Generate datasets/mgo_gpaw.extxyz: magnesium oxide labelled with periodic DFT (GPAW, PBE, plane
waves 600 eV): energy, forces and stress of 2-8 atom cells. The ionic solid of the development
suite: the rocksalt ground state (near equilibrium, with and without small distortions), strained,
rattled and hot rocksalt cells, Schottky-pair cells (one Mg and one O removed: the cell stays
neutral and insulating), and the other MgO structures a potential must rank above rocksalt
(CsCl, zinc blende, wurtzite).

Runs with Debian's GPAW under the system Python (not the project's venv):

    apt-get install gpaw
    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/generate_mgo_gpaw.py [--frames 64] [--workers 2]

Frame ``i`` is built from a generator seeded with ``i``, so the set is deterministic, and an
interrupted run resumes where the file ends. Labels as in ``gpaw_labels.py`` (PBE, Fermi-Dirac
0.1 eV) with Mg's 2-electron setup, a 600 eV cutoff for oxygen and a k-point density of 3.5 per
Å^-1. Measured on a rattled 8-atom cell: 600 eV is within 10 meV/Å (forces, largest component) of
750 eV, where 400 eV was 88 meV/Å and 0.26 eV/Å^3 (stress) from 500 eV; k-point density 3.5 is
within 3 meV/Å of 5 (MgO is a wide-gap insulator, PBE gap ~4.5 eV).
"""

import os
import sys

import numpy as np
from ase.build import bulk

from gpaw_labels import generate, hot, near_ground_state, strain_and_rattle  # this folder is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))

A_ROCKSALT = 4.26  # PBE lattice constant of MgO, Å
KINDS = ["rocksalt_ground", "rocksalt", "rocksalt8", "rocksalt8_hot", "schottky", "cscl", "zincblende", "wurtzite"]
SETTINGS = {"setups": {"Mg": "2"}, "kpt_density": 3.5, "ecut": 600.0}


def structure(index: int):
    """The structure of frame ``index`` and its kind (deterministic)."""
    rng = np.random.default_rng(index)
    kind = KINDS[index % len(KINDS)]
    a_scale = rng.uniform(0.95, 1.05)  # +-15 % in volume
    if kind == "rocksalt_ground":  # the ground state: equilibrium volume +-3 %, tiny distortions only
        atoms = near_ground_state(lambda a, cubic: bulk("MgO", "rocksalt", a=a, cubic=cubic), A_ROCKSALT, rng)
        return atoms, kind
    if kind == "rocksalt":
        atoms = bulk("MgO", "rocksalt", a=A_ROCKSALT * a_scale)
    elif kind in ("rocksalt8", "rocksalt8_hot"):
        atoms = bulk("MgO", "rocksalt", a=A_ROCKSALT * a_scale, cubic=True)
    elif kind == "schottky":
        atoms = bulk("MgO", "rocksalt", a=A_ROCKSALT * a_scale, cubic=True)
        magnesium = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "Mg"]
        oxygen = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "O"]
        del atoms[sorted([int(rng.choice(magnesium)), int(rng.choice(oxygen))], reverse=True)]
    elif kind == "cscl":
        atoms = bulk("MgO", "cesiumchloride", a=2.66 * a_scale)
    elif kind == "zincblende":
        atoms = bulk("MgO", "zincblende", a=4.60 * a_scale)
    else:
        atoms = bulk("MgO", "wurtzite", a=3.30 * a_scale, c=5.10 * a_scale)
    atoms = strain_and_rattle(atoms, rng)
    if kind == "rocksalt8_hot":  # wide distortions on top
        atoms = hot(atoms, rng, 0.1, 0.25)
    return atoms, kind


def main(argv=None):
    return generate(structure, __doc__.splitlines()[0], os.path.join(HERE, "mgo_gpaw.extxyz"), 64, argv=argv,
                    **SETTINGS)


if __name__ == "__main__":
    sys.exit(main())
