"""mlff demo (placeholder until the shipped example potential lands).

Builds a *small untrained* model, deploys it to one TorchScript file, and runs a short ASE
relaxation and MD with it. The numbers are not physical: this shows the pipeline only.
"""

import os
import sys
import time

import numpy as np
from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from ase import units

import mlff


def main() -> int:
    out_dir = os.path.abspath("demo-output")
    os.makedirs(out_dir, exist_ok=True)
    print("mlff demo: NOTE this uses a small UNTRAINED model; energies are not physical.")
    model = mlff.build_model(mlff.ModelConfig.preset("small", r_cut=4.0), species=["Cu"], seed=0)
    path = mlff.deploy(model, os.path.join(out_dir, "untrained-small.pt"))
    print(f"[1/3] deployed {path} ({os.path.getsize(path) / 1e6:.2f} MB): {mlff.read_metadata(path)}")

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=0)
    atoms.calc = mlff.MLFFCalculator(path)
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    opt.run(fmax=0.01, steps=100)
    print(f"[2/3] relaxed {len(atoms)} Cu atoms in {opt.nsteps} steps: E = {atoms.get_potential_energy():.4f} eV, "
          f"max |F| = {np.abs(atoms.get_forces()).max():.2e} eV/Å")

    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=2 * units.fs)
    e0 = atoms.get_total_energy()
    start = time.perf_counter()
    dyn.run(50)
    rate = 50 / (time.perf_counter() - start)
    print(f"[3/3] 50 NVE steps at {rate:.1f} steps/s, total-energy change {atoms.get_total_energy() - e0:+.2e} eV")
    print(f"demo finished successfully; files in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
