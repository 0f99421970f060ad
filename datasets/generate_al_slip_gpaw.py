"""Slip of (111) planes in aluminium for ``al_gpaw_k5.extxyz``'s training (GPAW, PBE, 300 eV,
k-point density 5 per Å^-1, the set's settings): 6-plane periodic (111) columns whose third cell
vector is shifted by a fraction of the partial Burgers vector a/6 <112> (0 the perfect crystal,
1 the intrinsic stacking fault, half-way near the unstable fault), near the equilibrium lattice
constant, the planes' heights relaxed a little and every atom rattled.

    OMP_NUM_THREADS=1 /usr/bin/python3 datasets/generate_al_slip_gpaw.py --workers 2

No frame of the set has two planes sliding over each other: a model fitted to it puts the
unstable stacking fault (the top of the slip's energy curve, ``mlff physics --stacking-fault``)
where it extrapolates to (docs/benchmarks/2026-12-05_unstable_stacking_fault.md).
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # mlff.physics: ASE and NumPy

from gpaw_labels import generate  # noqa: E402  datasets/gpaw_labels.py (this script's folder is on sys.path)
from mlff.physics import plane_column, slip_vector  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
A_FCC = 4.044  # the PBE lattice constant of these settings (al_gpaw_k5_reference.json), Å
FRAMES = 12


def structure(index: int):
    """Frame ``index``: the column at a lattice constant within +-1 %, shifted by the fraction
    ``(index + u) / FRAMES`` of the partial (``u`` uniform in [0, 1): the frames cover the curve
    from the perfect crystal to the fault evenly), each plane moved up to 0.05 Å along the normal
    and each atom by up to 0.03 Å."""
    rng = np.random.default_rng(2000 + index)
    column = plane_column("Al", "fcc", "111", A_FCC * rng.uniform(0.99, 1.01), 6)
    cell = column.cell.array.copy()
    cell[2] += (index + rng.uniform()) / FRAMES * slip_vector(column, "fcc")
    column.set_cell(cell, scale_atoms=False)
    column.positions[:, 2] += rng.uniform(-0.05, 0.05, len(column))
    column.positions += rng.normal(0.0, 0.03, column.positions.shape)
    column.wrap()
    return column, "slip"


def main(argv=None):
    return generate(structure, __doc__.splitlines()[0], os.path.join(HERE, "al_gpaw_k5_slip.extxyz"), FRAMES,
                    kpt_density=5.0, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
