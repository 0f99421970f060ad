"""What the property calculations share: the kind of a crystal's cell, and relaxing ions (and a
cell's shape) with ASE's BFGS."""

from __future__ import annotations

import numpy as np
from ase import Atoms


def lattice_kind(atoms: Atoms) -> str:
    """``cubic`` (the cell is a * identity), ``hexagonal`` (a1 along x, a2 of the same length at
    120 degrees in the xy plane, c along z: ASE's hcp and wurtzite cells, the orientation the
    hexagonal elastic constants assume) or ``other``."""
    cell = atoms.cell.array
    a = float(np.linalg.norm(cell[0]))
    tol = 1e-6 * a
    if np.allclose(cell, np.eye(3) * cell[0, 0], atol=tol):
        return "cubic"
    along_x = abs(cell[0, 1]) < tol and abs(cell[0, 2]) < tol
    along_z = abs(cell[2, 0]) < tol and abs(cell[2, 1]) < tol
    in_plane = abs(cell[1, 2]) < tol and abs(np.linalg.norm(cell[1]) - a) < tol
    if along_x and along_z and in_plane and abs(float(cell[0] @ cell[1]) + 0.5 * a * a) < tol * a:
        return "hexagonal"
    return "other"


def relax(atoms: Atoms, fmax: float, steps: int = 200, shape: bool = False) -> None:
    """Relax the ions at a fixed cell, and with ``shape`` the cell's shape at a fixed volume too
    (nothing to do when no force, nor stress times volume per atom, is above ``fmax``)."""
    from ase.optimize import BFGS

    target = atoms
    if shape:
        try:
            from ase.filters import FrechetCellFilter as CellFilter
        except ImportError:  # ASE < 3.23 (Debian's, under which the DFT references in datasets/ run)
            from ase.constraints import ExpCellFilter as CellFilter

        target = CellFilter(atoms, constant_volume=True)
    if np.abs(target.get_forces()).max() <= fmax:
        return
    BFGS(target, logfile=None).run(fmax=fmax, steps=steps)
