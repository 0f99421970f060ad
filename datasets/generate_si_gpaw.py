"""Generate datasets/si_gpaw.extxyz: silicon labelled with periodic DFT (GPAW, PBE, plane waves):
energy, forces and stress of 1-8 atom cells. The ground state (diamond near equilibrium, with
and without small distortions) is in the data, beside wide distortions (rattles of up to 0.35 Å,
volumes of +-15 %), other phases (beta-tin, simple cubic, bcc, fcc, hcp) and vacancies. A
development set for the low-energy tail and the physical properties (issue: fitting you can trust
for physics): a covalent solid whose ground state a potential must get right.

Runs with Debian's GPAW under the system Python (not the project's venv):

    apt-get install gpaw
    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/generate_si_gpaw.py [--frames 120] [--workers 2]

Frame ``i`` is built from a generator seeded with ``i``, so the set is deterministic, and an
interrupted run resumes where the file ends. Labels as in ``gpaw_labels.py`` (PBE, 300 eV,
k-point density 5 per Å^-1, Fermi-Dirac 0.1 eV).
"""

import os
import sys

import numpy as np
from ase.build import bulk
from ase.spacegroup import crystal

from gpaw_labels import generate, hot, near_ground_state, strain_and_rattle  # this folder is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))

A_DIAMOND = 5.47  # PBE lattice constant of Si, Å
KINDS = ["diamond_ground", "diamond", "diamond8", "diamond8_hot", "vacancy", "beta_tin", "sc", "bcc", "fcc", "hcp"]


def structure(index: int):
    """The structure of frame ``index`` and its kind (deterministic)."""
    rng = np.random.default_rng(index)
    kind = KINDS[index % len(KINDS)]
    a_scale = rng.uniform(0.95, 1.05)  # +-15 % in volume
    if kind == "diamond_ground":  # the ground state: equilibrium volume +-3 %, tiny distortions only
        atoms = near_ground_state(lambda a, cubic: bulk("Si", "diamond", a=a, cubic=cubic), A_DIAMOND, rng)
        return atoms, kind
    if kind == "diamond":
        atoms = bulk("Si", "diamond", a=A_DIAMOND * a_scale)
    elif kind in ("diamond8", "diamond8_hot"):
        atoms = bulk("Si", "diamond", a=A_DIAMOND * a_scale, cubic=True)
    elif kind == "vacancy":
        atoms = bulk("Si", "diamond", a=A_DIAMOND * a_scale, cubic=True)
        del atoms[int(rng.integers(len(atoms)))]
    elif kind == "beta_tin":
        atoms = crystal("Si", [(0.0, 0.0, 0.0)], spacegroup=141, setting=1,
                        cellpar=[4.82 * a_scale, 4.82 * a_scale, 2.66 * a_scale, 90, 90, 90])
    elif kind == "sc":
        atoms = bulk("Si", "sc", a=2.53 * a_scale).repeat((1, 1, int(rng.integers(1, 3))))
    elif kind == "bcc":
        atoms = bulk("Si", "bcc", a=3.08 * a_scale, cubic=rng.random() < 0.5)
    elif kind == "fcc":
        atoms = bulk("Si", "fcc", a=3.87 * a_scale)
    else:
        atoms = bulk("Si", "hcp", a=2.73 * a_scale, c=4.47 * a_scale)
    atoms = strain_and_rattle(atoms, rng)
    if kind == "diamond8_hot":  # wide distortions: a liquid-like rattle on top
        atoms = hot(atoms, rng, 0.15, 0.35)
    return atoms, kind


def main(argv=None):
    return generate(structure, __doc__.splitlines()[0], os.path.join(HERE, "si_gpaw.extxyz"), 120,
                    kpt_density=5.0, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
