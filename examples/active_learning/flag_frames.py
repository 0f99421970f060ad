"""Active learning with a committee: run MD (or read a trajectory) with several mlff models and
write the frames on which they disagree, to be recomputed with DFT and added to the training set.

    # a committee: the same config trained with different seeds (seed: 1, 2, 3 in the YAML)
    python examples/active_learning/flag_frames.py --models a.pt b.pt c.pt \\
        --structure start.extxyz --steps 2000 --temperature 900 --threshold 0.15 --out to_dft.extxyz
    python examples/active_learning/flag_frames.py --models a.pt b.pt c.pt \\
        --trajectory md.extxyz --threshold 0.15 --out to_dft.extxyz
    # the frames a LAMMPS committee run dumped (examples/md/in.active_learning)
    python examples/active_learning/flag_frames.py --models a.pt b.pt c.pt \\
        --trajectory uncertain.dump --threshold 0.05 --out to_dft.extxyz

A frame is flagged when the largest per-atom force spread of the committee (``max_forces_std``,
eV/Å) exceeds ``--threshold``; flagged frames closer than ``--min-gap`` steps to the previous one
are skipped (consecutive MD frames are nearly the same structure). Typical thresholds are 2-5
times the committee's spread on its own validation set (``mlff evaluate a.pt valid.extxyz
--committee b.pt c.pt`` prints it).
"""

import argparse
import sys

from ase import units
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from mlff import MLFFCalculator
from mlff.calculators.batched import batchable, predict_batched


def spreads(frames, calc):
    """Each frame's max_forces_std, many frames per model call where the models allow it."""
    if batchable(calc):
        return [result["max_forces_std"] for result in predict_batched(calc, frames)]
    values = []
    for atoms in frames:
        atoms.calc = calc
        atoms.get_forces()
        values.append(calc.results["max_forces_std"])
    return values


def flag(frames, calc, threshold, min_gap):
    """(index, max_forces_std) of the flagged frames."""
    flagged, last = [], -min_gap
    for index, spread in enumerate(spreads(frames, calc)):
        if spread > threshold and index - last >= min_gap:
            flagged.append((index, spread))
            last = index
    return flagged


def md_frames(structure, calc, steps, temperature, interval, seed=0):
    """Langevin MD with the committee's mean forces; a copy of the structure every ``interval`` steps."""
    atoms = structure.copy()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=__import__("numpy").random.default_rng(seed))
    dyn = Langevin(atoms, 1.0 * units.fs, temperature_K=temperature, friction=0.02, rng=__import__("numpy").random.default_rng(seed))
    frames = []
    for _ in range(max(1, steps // interval)):
        dyn.run(interval)
        frames.append(atoms.copy())
    return frames


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="two or more model files (a committee)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--trajectory", help="frames to screen (any ASE-readable file)")
    source.add_argument("--structure", help="start an MD run from this structure")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=10, help="MD steps between screened frames")
    parser.add_argument("--temperature", type=float, default=600.0, help="K")
    parser.add_argument("--threshold", type=float, default=0.15, help="eV/Å of max_forces_std")
    parser.add_argument("--min-gap", type=int, default=1, help="frames between two flagged ones")
    parser.add_argument("--out", default="to_dft.extxyz")
    args = parser.parse_args(argv)
    if len(args.models) < 2:
        parser.error("a committee needs at least two models")

    calc = MLFFCalculator(args.models)
    if args.trajectory:
        lammps_dump = args.trajectory.endswith((".dump", ".lammpstrj"))  # `dump custom` with an element column
        frames = read(args.trajectory, ":", format="lammps-dump-text" if lammps_dump else None)
    else:
        frames = md_frames(read(args.structure), calc, args.steps, args.temperature, args.interval)
    flagged = flag(frames, calc, args.threshold, args.min_gap)
    selected = []
    for index, spread in flagged:
        atoms = frames[index].copy()  # positions and cell only: the labels come from DFT
        atoms.info.update(frame=index, max_forces_std=spread)
        selected.append(atoms)
    if selected:
        write(args.out, selected)
    print(f"{len(flagged)} of {len(frames)} frames flagged (max_forces_std > {args.threshold} eV/Å)"
          + (f": written to {args.out}" if selected else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
