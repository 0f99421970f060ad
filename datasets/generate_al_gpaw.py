"""Generate datasets/al_gpaw.extxyz: aluminium labelled with periodic DFT (GPAW, PBE, plane waves):
energy, forces and stress of 1-8 atom cells in many crystal structures, volumes and strains,
rattled, with vacancies and thin slabs. A development set for fitting quality on real DFT data
(the kind of data users fit: one element, many phases and volumes).

Runs with Debian's GPAW under the system Python (not the project's venv):

    apt-get install gpaw
    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/generate_al_gpaw.py [--frames 336] [--workers 1]

Frame ``i`` is built from a generator seeded with ``i``, so the set is deterministic, and an
interrupted run resumes: frames already in the file are skipped (the file is appended to frame by
frame, in index order). About 5-40 s per frame on one core here.

Settings: PBE, plane waves 300 eV, Monkhorst-Pack k-points of density 2.5 per Å^-1 (at least 1
per direction; slabs 1 along the normal), Fermi-Dirac smearing 0.1 eV (energies are the
extrapolated free energies at zero smearing that GPAW reports), no symmetry (rattled cells).
The committed set was made with symmetry off; the script now keeps time reversal, which gives
the same labels to the SCF tolerance in half the time. A density of 2.5 is too coarse for labels
without k-point noise (``gpaw_labels.py``, datasets/README.md *Label noise*):
``--kpt-density 5 --out al_gpaw_k5.extxyz`` makes the same structures with converged labels.
"""

import os
import sys

import numpy as np
from ase.build import bulk, fcc100, fcc111

from gpaw_labels import generate, strain_and_rattle  # datasets/gpaw_labels.py (this script's folder is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))

A_FCC = 4.04  # PBE lattice constant of Al, Å
KINDS = ["fcc", "bcc", "hcp", "sc", "diamond", "fcc_supercell", "vacancy", "slab100", "slab111", "dimer_chain"]


def structure(index: int):
    """The structure of frame ``index`` and its kind (deterministic)."""
    rng = np.random.default_rng(index)
    kind = KINDS[index % len(KINDS)]
    volume_scale = rng.uniform(0.86, 1.14)
    a_scale = volume_scale ** (1 / 3)
    if kind == "fcc":
        atoms = bulk("Al", "fcc", a=A_FCC * a_scale, cubic=rng.random() < 0.5)
    elif kind == "bcc":
        atoms = bulk("Al", "bcc", a=3.24 * a_scale, cubic=rng.random() < 0.5)
    elif kind == "hcp":
        atoms = bulk("Al", "hcp", a=2.86 * a_scale, c=4.67 * a_scale)
    elif kind == "sc":
        atoms = bulk("Al", "sc", a=2.73 * a_scale).repeat((1, 1, int(rng.integers(1, 3))))
    elif kind == "diamond":
        atoms = bulk("Al", "diamond", a=6.0 * a_scale)
    elif kind == "fcc_supercell":
        atoms = bulk("Al", "fcc", a=A_FCC * a_scale, cubic=True).repeat((2, 1, 1))
    elif kind == "vacancy":
        atoms = bulk("Al", "fcc", a=A_FCC * a_scale, cubic=True).repeat((2, 1, 1))
        del atoms[int(rng.integers(len(atoms)))]
    elif kind == "slab100":
        atoms = fcc100("Al", size=(1, 1, 4), a=A_FCC * a_scale, vacuum=4.0, periodic=True)
    elif kind == "slab111":
        atoms = fcc111("Al", size=(1, 1, 4), a=A_FCC * a_scale, vacuum=4.0, periodic=True)
    else:  # a compressed or stretched chain of dimers in a small box: unusual coordination
        atoms = bulk("Al", "sc", a=2.6 * a_scale).repeat((1, 1, 2))
        atoms.set_cell(np.diag([4.5, 4.5, atoms.cell[2, 2]]) * rng.uniform(0.9, 1.1), scale_atoms=False)
    return strain_and_rattle(atoms, rng, strain="slab" not in kind), kind


def main(argv=None):
    return generate(structure, __doc__.splitlines()[0], os.path.join(HERE, "al_gpaw.extxyz"), 336,
                    kpt_density=2.5, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
