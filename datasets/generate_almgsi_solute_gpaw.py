"""Dilute Mg and Si in aluminium, beside a vacancy and on their way into it, for
``almgsi_gpaw_k5.extxyz``'s training (GPAW, PBE, 300 eV, Mg's 2-electron setup, k-point density 5
per Å^-1: the set's settings). Cells are a 2x2x2 cubic fcc supercell (32 sites) near aluminium's
lattice constant with one solute, Mg in even frames and Si in odd ones, rattled as a relaxing
cell is:

- frames 0-7, ``solute_vacancy``: a site emptied and a nearest neighbour of it the solute (31
  atoms);
- frames 8-15, ``solute_hop``: the same with the solute part-way along its exchange with the
  vacancy (a quarter to half-way, half-way being the saddle);
- frames 16-23, ``dilute_solute``: no vacancy, the solute among 31 aluminium atoms.

    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/generate_almgsi_solute_gpaw.py --workers 2

The set's solutes sit in 1-8 atom cells at 12-50 % and its vacancy cells hold 7 atoms; no frame
comes near a solute squeezed between two aluminium atoms on its way into a vacancy, and two fits
with the same test errors put Si's exchange barrier 0.26 eV apart
(docs/benchmarks/2026-12-06_solutes.md). These frames sample that path, as
``generate_al_vacancy_gpaw.py``'s hop frames do for aluminium's own hop. None is the relaxed
saddle of ``almgsi_gpaw_k5_reference.json``. Frames 16-23 came after a fit with the first 16
still put Si's solution energy 0.1 eV low (frames 0-15 are the same with or without them).
"""

import os
import sys

import numpy as np
from ase.build import bulk

from gpaw_labels import generate  # datasets/gpaw_labels.py (this script's folder is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
A_FCC = 4.04  # aluminium's PBE lattice constant with these settings, Å
SOLUTES = ["Mg", "Si"]
BESIDE = 8  # frames 0-7: the solute beside the vacancy; 8-15 the hops; 16-23 no vacancy


def structure(index: int):
    """Frame ``index``: the supercell at a lattice constant within +-1 %, a random site chosen and
    the solute ``SOLUTES[index % 2]`` on a random nearest neighbour of it. Frames before
    ``BESIDE`` empty the chosen site and displace every atom by up to 0.08 Å; from ``BESIDE`` on,
    the solute is moved 25-50 % of the way into the empty site first, and the atoms displaced by
    up to 0.05 Å; from ``2 * BESIDE`` on, no site is emptied (up to 0.08 Å)."""
    rng = np.random.default_rng(2000 + index)
    atoms = bulk("Al", "fcc", a=A_FCC * rng.uniform(0.99, 1.01), cubic=True).repeat((2, 2, 2))
    vacant = int(rng.integers(len(atoms)))
    vectors = atoms.get_distances(vacant, range(len(atoms)), mic=True, vector=True)
    lengths = np.linalg.norm(vectors, axis=1)
    lengths[vacant] = np.inf
    solute = int(rng.choice(np.flatnonzero(lengths < lengths.min() + 1e-6)))
    atoms[solute].symbol = SOLUTES[index % len(SOLUTES)]
    kind, rattle = "solute_vacancy", 0.08
    if index >= 2 * BESIDE:
        kind = "dilute_solute"
    elif index >= BESIDE:
        kind, rattle = "solute_hop", 0.05
        atoms.positions[solute] -= rng.uniform(0.25, 0.5) * vectors[solute]
    if kind != "dilute_solute":
        del atoms[vacant]
    atoms.positions += rng.normal(0.0, rng.uniform(0.0, rattle), atoms.positions.shape)
    atoms.wrap()
    return atoms, kind


def main(argv=None):
    return generate(structure, __doc__.splitlines()[0], os.path.join(HERE, "almgsi_gpaw_k5_solute.extxyz"),
                    3 * BESIDE, setups={"Mg": "2"}, kpt_density=5.0, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
