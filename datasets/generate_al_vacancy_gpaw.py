"""Dilute vacancies in aluminium for ``al_gpaw_k5.extxyz``'s training (GPAW, PBE, 300 eV, k-point
density 5 per Å^-1, the set's settings): 31-atom cells, a 2x2x2 cubic fcc supercell with one
atom removed, near the equilibrium lattice constant and rattled as a relaxing vacancy is
(frames 0-7); in frames 8-15 a neighbour of the vacancy is part-way along its hop into it (a
quarter to half-way, half-way being the saddle of vacancy diffusion).

    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/generate_al_vacancy_gpaw.py --workers 2

The set's own vacancy frames hold 7 atoms, so that every atom neighbours the vacancy; a model fitted
to them within 2.4 meV/atom put the 32-site vacancy formation energy 13-20 % below DFT's
(docs/benchmarks/2026-12-05_defects.md). These frames hold the environment that was missing; the
hops hold the path of the vacancy's migration, which no frame of the set comes near.
"""

import os
import sys

import numpy as np
from ase.build import bulk

from gpaw_labels import generate  # datasets/gpaw_labels.py (this script's folder is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
A_FCC = 4.044  # the PBE lattice constant of these settings (al_gpaw_k5_reference.json), Å


VACANCIES = 8  # frames 0-7; the hops follow


def structure(index: int):
    """Frame ``index``: the supercell at a lattice constant within +-1 %, one site emptied (which
    one does not matter: all are equivalent) and every atom displaced by up to 0.08 Å; from
    frame ``VACANCIES`` on, a nearest neighbour of the empty site moved 25-50 % of the way into it
    first, and the others displaced by up to 0.05 Å."""
    rng = np.random.default_rng(1000 + index)
    atoms = bulk("Al", "fcc", a=A_FCC * rng.uniform(0.99, 1.01), cubic=True).repeat((2, 2, 2))
    vacant = int(rng.integers(len(atoms)))
    hop = index >= VACANCIES
    if hop:
        vectors = atoms.get_distances(vacant, range(len(atoms)), mic=True, vector=True)
        lengths = np.linalg.norm(vectors, axis=1)
        lengths[vacant] = np.inf
        neighbour = int(rng.choice(np.flatnonzero(lengths < lengths.min() + 1e-6)))
        atoms.positions[neighbour] -= rng.uniform(0.25, 0.5) * vectors[neighbour]
    del atoms[vacant]
    atoms.positions += rng.normal(0.0, rng.uniform(0.0, 0.05 if hop else 0.08), atoms.positions.shape)
    atoms.wrap()
    return atoms, "vacancy_hop" if hop else "dilute_vacancy"


def main(argv=None):
    return generate(structure, __doc__.splitlines()[0], os.path.join(HERE, "al_gpaw_k5_vacancy.extxyz"),
                    2 * VACANCIES,
                    kpt_density=5.0, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
