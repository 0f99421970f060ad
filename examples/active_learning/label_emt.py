"""Label frames with ASE's EMT potential: the stand-in for DFT in docs/active_learning.md (and its
test). For real work the labels come from your DFT code; any ASE calculator fits here.

    python examples/active_learning/label_emt.py to_dft.extxyz labelled.extxyz
"""

import argparse
import sys

from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", help="the frames to label (any ASE-readable file)")
    parser.add_argument("out", help="labelled frames, extxyz (energy, forces, stress)")
    args = parser.parse_args(argv)
    frames = read(args.frames, ":")
    for atoms in frames:
        atoms.calc = EMT()
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
    write(args.out, frames)
    print(f"{len(frames)} frames labelled with EMT: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
