"""Generate datasets/almgsi_gpaw_k5.extxyz: the Al-Mg-Si system (the 6xxx aluminium alloys) labelled
with periodic DFT (GPAW, PBE, plane waves): energy, forces and stress of 1-8 atom cells of three
elements in many phases, compositions, volumes and strains, rattled, with vacancies and slabs.
The multi-element development set for fitting quality on real DFT data.

Runs with Debian's GPAW under the system Python (not the project's venv):

    apt-get install gpaw
    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/generate_almgsi_gpaw.py [--frames 300] [--workers 1]

Frame ``i`` is built from a generator seeded with ``i``, so the set is deterministic, and an
interrupted run resumes: frames already in the file are skipped (the file is appended to frame by
frame, in index order).

Structures (each kind in turn, volume 0.88-1.12 of the reference, 2.5 % random strain and a random
rattle of up to 0.15 Å on bulk cells): fcc Al with Mg/Si solutes (1 and 4 atoms), random fcc and
bcc Al-Mg-Si orderings (2-4 atoms), hcp Mg with solutes, diamond Si with solutes, Mg2Si
(antifluorite, 3 atoms), 7-atom fcc vacancy cells with a solute, 4-layer Al (111) and (100) slabs
with a surface solute, and a 2-layer Si (100) slab.

Settings: PBE, plane waves 300 eV, Mg's 2-electron setup, Monkhorst-Pack k-points of density
5 per Å^-1 (at least 1 per direction; slabs 1 along the normal), Fermi-Dirac smearing 0.1 eV
(energies are the extrapolated free energies at zero smearing that GPAW reports), no point-group
symmetry, time reversal. ``datasets/almgsi_gpaw.extxyz`` holds the same structures labelled with
a density of 2.5 (and symmetry off): ``--kpt-density 2.5 --out almgsi_gpaw.extxyz``. Its labels
carry k-point noise of up to 160 meV/Å and 50 meV/atom (datasets/README.md, *Label noise*).
"""

import os
import sys

import numpy as np
from ase.build import bulk, fcc100, fcc111

from gpaw_labels import generate, strain_and_rattle  # datasets/gpaw_labels.py (this script's folder is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))

A_AL = 4.04  # PBE lattice constants, Å
A_SI = 5.47
A_MG, C_MG = 3.19, 5.18
A_MG2SI = 6.35
SOLUTES = ["Mg", "Si"]
KINDS = ["fcc_solute", "fcc_random", "bcc_random", "hcp_mg", "diamond_si", "mg2si", "fcc_cubic_solute",
         "vacancy", "slab111", "slab100", "si_slab100", "fcc_random"]


def _substitute(atoms, rng, fraction, pool=("Al", "Mg", "Si")):
    """Replace each atom by a random element of ``pool`` with probability ``fraction``."""
    symbols = atoms.get_chemical_symbols()
    for i in range(len(symbols)):
        if rng.random() < fraction:
            symbols[i] = str(rng.choice(pool))
    atoms.set_chemical_symbols(symbols)
    return atoms


def structure(index: int):
    """The structure of frame ``index`` and its kind (deterministic)."""
    rng = np.random.default_rng(index)
    kind = KINDS[index % len(KINDS)]
    s = rng.uniform(0.88, 1.12) ** (1 / 3)  # linear scale from a volume scale
    if kind == "fcc_solute":
        atoms = bulk("Al", "fcc", a=A_AL * s).repeat((1, 1, 2))
        atoms[0].symbol = str(rng.choice(["Al", "Mg", "Si"]))
    elif kind == "fcc_random":
        atoms = _substitute(bulk("Al", "fcc", a=A_AL * s).repeat((1, 1, int(rng.integers(2, 5)))), rng, 0.5)
    elif kind == "bcc_random":
        atoms = _substitute(bulk("Al", "bcc", a=3.24 * s, cubic=True), rng, 0.6)
    elif kind == "hcp_mg":
        atoms = bulk("Mg", "hcp", a=A_MG * s, c=C_MG * s)
        atoms = _substitute(atoms, rng, 0.3, pool=("Al", "Si"))
    elif kind == "diamond_si":
        atoms = _substitute(bulk("Si", "diamond", a=A_SI * s), rng, 0.3, pool=("Al", "Mg"))
    elif kind == "mg2si":
        atoms = bulk("SiMg2", "fluorite", a=A_MG2SI * s)  # antifluorite: Si on the fcc sites
    elif kind == "fcc_cubic_solute":
        atoms = bulk("Al", "fcc", a=A_AL * s, cubic=True)
        atoms[int(rng.integers(4))].symbol = str(rng.choice(SOLUTES))
    elif kind == "vacancy":
        atoms = bulk("Al", "fcc", a=A_AL * s, cubic=True).repeat((2, 1, 1))
        del atoms[int(rng.integers(len(atoms)))]
        atoms[int(rng.integers(len(atoms)))].symbol = str(rng.choice(SOLUTES))
    elif kind in ("slab111", "slab100"):
        build = fcc111 if kind == "slab111" else fcc100
        atoms = build("Al", size=(1, 1, 4), a=A_AL * s, vacuum=4.0, periodic=True)
        atoms[int(np.argmax(atoms.positions[:, 2]))].symbol = str(rng.choice(SOLUTES))
    else:  # a two-layer Si (100) slab: under-coordinated Si
        atoms = bulk("Si", "diamond", a=A_SI * s, cubic=True)
        atoms = atoms[atoms.positions[:, 2] < 0.3 * atoms.cell[2, 2]]
        atoms.center(vacuum=4.0, axis=2)
        atoms.pbc = True
    return strain_and_rattle(atoms, rng, strain="slab" not in kind), kind


def main(argv=None):
    return generate(structure, __doc__.splitlines()[0], os.path.join(HERE, "almgsi_gpaw_k5.extxyz"), 300,
                    setups={"Mg": "2"}, kpt_density=5.0, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
