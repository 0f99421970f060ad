"""Generate datasets/ethanol_xtb.extxyz: ethanol MD at 500 K labelled with GFN2-xTB (tblite).

Langevin MD (0.5 fs steps) with GFN2-xTB forces; every 20th step is kept, with energy, forces and
the molecular dipole (e Å). Deterministic (seeded). Needs `pip install tblite` (about 1 minute).
Run: OMP_NUM_THREADS=1 python datasets/generate_ethanol_xtb.py
"""

import os

import numpy as np
from ase import units
from ase.build import molecule
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution


def main(path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ethanol_xtb.extxyz"),
         frames=250, stride=20):
    from tblite.ase import TBLite

    atoms = molecule("CH3CH2OH")
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=500, rng=np.random.default_rng(11))
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=500, friction=0.02, fixcm=False,
                   rng=np.random.default_rng(12))
    dyn.run(200)  # equilibrate
    out = []
    for _ in range(frames):
        dyn.run(stride)
        frame = atoms.copy()
        frame.calc = None
        frame.info["energy"] = atoms.get_potential_energy()
        frame.arrays["forces"] = atoms.get_forces()
        frame.info["dipole"] = atoms.calc.get_property("dipole", atoms)
        out.append(frame)
    write(path, out, format="extxyz")
    print(f"wrote {len(out)} frames to {path}")


if __name__ == "__main__":
    main()
