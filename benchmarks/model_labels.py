"""Label frames with a model file: the control of a fitting experiment.

    python benchmarks/model_labels.py TEACHER.pt IN.extxyz OUT.extxyz

Every frame of IN gets the teacher's energy, forces and stress (periodic frames) in place of its
labels; its other info (``config_type``, weights) is kept. A model gives a crystal one energy per
atom whatever cell it sits in, so these labels agree across cell shapes exactly, as DFT labels
at unconverged k-points do not. Fitting a student to them on the same structures, with the same
budget, and comparing the student's physical properties with the teacher's (``mlff physics
STUDENT.pt ... --reference TEACHER.pt``) separates what the data's structures and the fit can
learn from what their labels' disagreements do (docs/benchmarks/2026-12-06_teacher_labels.md).
"""

import argparse

from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from mlff.data.readers import Frame
from mlff.evaluation import predict_frames


def label(frames, model_path, device="cpu"):
    """The frames (ASE Atoms, modified in place and returned) with the model's energy, forces, and
    stress (cells periodic in all three directions) or dipole (molecules, where the model has one)."""
    unlabelled = [Frame(atoms, None, None, None, f"frame {k}") for k, atoms in enumerate(frames)]
    for atoms, predicted in zip(frames, predict_frames(model_path, unlabelled, device)):
        results = {name: predicted[name] for name in ("energy", "forces", "stress", "dipole")
                   if predicted[name] is not None}
        atoms.calc = SinglePointCalculator(atoms, **results)
    return frames


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", help="model file whose predictions become the labels")
    parser.add_argument("data", help="frames to label (any format ASE reads)")
    parser.add_argument("out", help="extxyz file to write")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    frames = label(read(args.data, ":"), args.teacher, args.device)
    write(args.out, frames, format="extxyz")
    print(f"{len(frames)} frames labelled by {args.teacher}: {args.out}")


if __name__ == "__main__":
    main()
