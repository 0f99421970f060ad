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
"""

import argparse
import os
import sys
import time

import numpy as np
from ase.build import bulk, fcc100, fcc111
from ase.calculators.calculator import kptdensity2monkhorstpack
from ase.io import read, write

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
    if not kind.startswith("slab"):
        strain = np.eye(3) + 0.025 * rng.standard_normal((3, 3))
        atoms.set_cell(atoms.cell.array @ (0.5 * (strain + strain.T)), scale_atoms=True)
    atoms.positions += rng.normal(0.0, rng.uniform(0.0, 0.15), atoms.positions.shape)
    atoms.wrap()
    return atoms, kind


def label(atoms, kind):
    from gpaw import GPAW, PW, FermiDirac

    kpts = kptdensity2monkhorstpack(atoms, kptdensity=2.5, even=False)
    if kind.startswith("slab"):
        kpts[2] = 1
    atoms.calc = GPAW(mode=PW(300), xc="PBE", kpts=[int(k) for k in kpts], occupations=FermiDirac(0.1),
                      symmetry="off", txt=None)
    out = atoms.copy()
    out.info["energy"] = atoms.get_potential_energy()
    out.arrays["forces"] = atoms.get_forces()
    out.info["stress"] = atoms.get_stress(voigt=False)
    out.info["config_type"] = kind
    return out


def _one(index):
    atoms, kind = structure(index)
    start = time.time()
    out = label(atoms, kind)
    out.info["index"] = index
    return index, out, time.time() - start


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=336, help="frames in the file (the committed set has 336)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(here, "al_gpaw.extxyz"))
    args = parser.parse_args(argv)
    done = len(read(args.out, ":")) if os.path.exists(args.out) else 0
    todo = list(range(done, args.frames))
    print(f"{done} frames in {args.out}; labelling {len(todo)} more", flush=True)
    if args.workers > 1:
        from multiprocessing import Pool

        pool = Pool(args.workers)
        results = pool.imap(_one, todo)  # in index order: the file stays ordered and resumable
    else:
        results = map(_one, todo)
    for index, out, seconds in results:
        write(args.out, out, append=True)
        print(f"frame {index} {out.info['config_type']} ({len(out)} atoms): {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
