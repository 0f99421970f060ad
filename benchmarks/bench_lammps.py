"""MD speed: LAMMPS (pair_style mlff, both halo modes, the exchange's graph on the host, kept on
the device or found there by a cell list, 1/2/4 MPI ranks) vs ASE MD vs the bare model call.

The plugin's overhead is the ratio of LAMMPS time per step to the bare scripted-model call on the
same structure (the model does the same work in both; LAMMPS adds ghost atoms, neighbour lists,
integration and communication). Each rank runs ``--threads`` threads (default 1, so that 2 ranks
use the 2 cores of this machine; 4 ranks oversubscribe them); the bare model and ASE use the same
number of threads as one rank. Parallel efficiency: ``t(1 rank) / (ranks * t(ranks))``, per mode.
``--committee 3 --committee-every 10`` adds, for each LAMMPS row, the same run with a committee of
3 models (the others: the same architecture, other seeds) evaluated every 10 steps, and its cost
against one model. ``--compiled`` builds the model's compiled layers (``mlff lammps compile``) and
adds, for each halo-exchange row, the same run with ``compiled yes`` and its speed against the
TorchScript row (``compiled no``) measured just before it.

    python benchmarks/bench_lammps.py [--sizes 1000 8000 32000] [--ranks 1 2 4] [--steps 10]
        [--modes exchange shell] [--graphs host device cells] [--model model.pt]
        [--committee 3 --committee-every 10] [--compiled]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from bench_model import _repeats  # same folder: shared replication helper

DECK = """
units metal
atom_style atomic
lattice fcc 3.59
region box block 0 {a} 0 {b} 0 {c}
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style mlff halo {halo}{extra}
pair_coeff * * {model} Cu
velocity all create 300.0 1 mom yes rot yes
fix integrate all nve
timestep 0.002
thermo {steps}
run 3
run {steps}
"""


def bare_model(model_path, reps, repeats, threads):
    import torch
    from ase.build import bulk

    import mlff
    from mlff.data import SpeciesMap, from_ase

    torch.set_num_threads(threads)
    deployed = mlff.load(model_path)
    atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(reps)
    atoms.rattle(0.02, seed=0)
    data = from_ase(atoms, SpeciesMap(deployed.species), deployed.r_cut)
    args = (data["positions"], data["edge_index"], data["edge_shift"], data["species"])
    for _ in range(3):  # TorchScript's profiling executor optimises over the first calls
        deployed(*args)
    start = time.perf_counter()
    for _ in range(repeats):
        deployed(*args)
    return (time.perf_counter() - start) / repeats


def ase_md(model_path, reps, steps, threads):
    import torch
    from ase import units
    from ase.build import bulk
    from ase.md.verlet import VelocityVerlet

    import mlff

    torch.set_num_threads(threads)
    atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(reps)
    atoms.rattle(0.02, seed=0)
    atoms.calc = mlff.MLFFCalculator(model_path)
    dyn = VelocityVerlet(atoms, timestep=2 * units.fs)
    dyn.run(3)
    start = time.perf_counter()
    dyn.run(steps)
    return (time.perf_counter() - start) / steps


def lammps_md(model_path, reps, steps, ranks, threads, workdir, halo="exchange", extra=""):
    from mlff.lammps.mpi import lammps_env

    deck = os.path.join(workdir, f"in.bench{ranks}")
    with open(deck, "w") as handle:
        handle.write(DECK.format(a=reps[0], b=reps[1], c=reps[2], model=model_path, steps=steps, halo=halo,
                                    extra=extra))
    bindir = os.path.dirname(sys.executable)
    cmd = [os.path.join(bindir, "lmp"), "-in", deck, "-log", "none"]
    if ranks > 1:
        cmd = [os.path.join(bindir, "mpiexec"), "-np", str(ranks)] + cmd
    env = dict(lammps_env(), OMP_NUM_THREADS=str(threads))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    if res.returncode != 0:
        raise RuntimeError(res.stdout[-2000:] + res.stderr[-2000:])
    loops = re.findall(r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps", res.stdout)
    seconds, nsteps = loops[-1]
    return float(seconds) / int(nsteps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["exchange", "shell"], choices=["exchange", "shell"])
    parser.add_argument("--graphs", nargs="+", default=["host", "device"], choices=["host", "device", "cells"],
                        help="where halo exchange builds its graph (pair_style mlff graph ...); shell: host")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="threads per rank (and for the bare model)")
    parser.add_argument("--no-ase", action="store_true", help="skip the ASE MD row")
    parser.add_argument("--model", help="model file (default: a fresh `small` Cu model, r_cut 4.5, float32)")
    parser.add_argument("--committee", type=int, default=1, help="> 1: also time a committee of this many models")
    parser.add_argument("--committee-every", type=int, default=10, help="steps between committee evaluations")
    parser.add_argument("--compiled", action="store_true",
                        help="also time each halo-exchange row with the compiled layers (compiled yes)")
    args = parser.parse_args()
    if args.committee > 1 and args.model:
        parser.error("--committee builds its members from the default model's config: leave out --model")

    import mlff

    with tempfile.TemporaryDirectory() as workdir:
        model_path = os.path.abspath(args.model) if args.model else None
        if model_path is None:
            model = mlff.build_model(mlff.ModelConfig.preset("small", r_cut=4.5, dtype="float32"), ["Cu"], seed=0)
            model_path = mlff.deploy(model, os.path.join(workdir, "model.pt"))
        members = [model_path]
        for seed in range(1, args.committee):
            other = mlff.build_model(mlff.ModelConfig.preset("small", r_cut=4.5, dtype="float32"), ["Cu"], seed=seed)
            members.append(mlff.deploy(other, os.path.join(workdir, f"member{seed}.pt")))
        if args.compiled:
            from mlff.modelfile.compiled_layers import compile_layers

            compile_layers(model_path)
        meta = mlff.read_metadata(model_path)
        print(f"model: {model_path} ({meta.config.get('num_layers')} layers, {meta.config.get('num_features')} "
              f"features, l_max {meta.config.get('l_max')}, r_cut {meta.r_cut} Å, {meta.dtype}); "
              f"{args.threads} thread(s) per rank; fcc Cu")
        header = (f"{'atoms':>6} {'engine':<26}{'ms/step':>10}{'atom-steps/s':>14}{'vs bare model':>15}"
                  f"{'par. efficiency':>17}")
        print(header)
        print("-" * len(header))
        for size in args.sizes:
            reps = _repeats(size // 4)
            n = 4 * int(np.prod(reps))
            bare = bare_model(model_path, reps, args.steps, args.threads)
            rows = [("bare model call", bare, None)]
            if not args.no_ase:
                rows.append(("ASE VelocityVerlet", ase_md(model_path, reps, args.steps, args.threads), None))
            for name, seconds, efficiency in rows:
                print(f"{n:>6} {name:<26}{1e3 * seconds:>10.1f}{n / seconds:>14.0f}{seconds / bare:>15.2f}", flush=True)
            variants = [f"exchange graph {g}" for g in args.graphs] if "exchange" in args.modes else []
            variants += ["shell"] if "shell" in args.modes else []
            for halo in variants:
                one = None
                for ranks in args.ranks:
                    try:
                        seconds = lammps_md(model_path, reps, args.steps, ranks, args.threads, workdir, halo,
                                            " compiled no")
                    except RuntimeError as error:
                        print(f"{n:>6} LAMMPS {halo} {ranks} rank(s): failed: {str(error)[-300:]}", flush=True)
                        continue
                    one = seconds if ranks == 1 else one
                    efficiency = f"{one / (ranks * seconds):>17.2f}" if one is not None else f"{'-':>17}"
                    name = f"LAMMPS {halo.replace('exchange graph ', 'exch. ')} {ranks} rank{'s' if ranks > 1 else ''}"
                    print(f"{n:>6} {name:<26}{1e3 * seconds:>10.1f}{n / seconds:>14.0f}{seconds / bare:>15.2f}"
                          f"{efficiency}", flush=True)
                    if args.compiled and halo.startswith("exchange"):
                        fast = lammps_md(model_path, reps, args.steps, ranks, args.threads, workdir, halo,
                                         " compiled yes")
                        name = "+ compiled layers"
                        print(f"{n:>6} {name:<26}{1e3 * fast:>10.1f}{n / fast:>14.0f}{fast / bare:>15.2f}"
                              f"   {seconds / fast:.2f}x TorchScript's speed", flush=True)
                    if len(members) > 1:
                        with_committee = lammps_md(" ".join(members), reps, args.steps, ranks, args.threads, workdir,
                                                   halo, f" committee_every {args.committee_every}")
                        name = f"+ committee of {len(members)}/{args.committee_every}"
                        print(f"{n:>6} {name:<26}{1e3 * with_committee:>10.1f}{n / with_committee:>14.0f}"
                              f"{with_committee / bare:>15.2f}   {with_committee / seconds:.2f}x one model", flush=True)


if __name__ == "__main__":
    main()
