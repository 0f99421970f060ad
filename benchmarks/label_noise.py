"""How far apart two labellings of the same structures are (e.g. DFT at two k-point densities):
the error a perfect model of one would have against the other. Prints MAE/RMSE of energy per atom,
forces and stress, in all and per ``config_type``; with ``--model``, each model's errors against
both labellings.

    python benchmarks/label_noise.py datasets/almgsi_gpaw.extxyz datasets/almgsi_gpaw_k5.extxyz
    python benchmarks/label_noise.py A.extxyz B.extxyz --test 80 --valid 40 --model run/model.pt

The files must hold the same structures in the same order (the same frame index, species,
positions and cell), as the GPAW generators write them for any ``--kpt-density``. ``--test``
restricts everything to the test frames of the budget benchmarks' seeded split
(``fit_budget.split_frames``), i.e. the frames the models of ``fit_peers.py`` were scored on.
"""

import argparse
from collections import defaultdict

import numpy as np
from ase.io import read


def _check_same_structures(a, b):
    if len(a) != len(b):
        raise SystemExit(f"the files hold {len(a)} and {len(b)} frames: not the same structures")
    for i, (x, y) in enumerate(zip(a, b)):
        if (x.get_chemical_symbols() != y.get_chemical_symbols()
                or not np.allclose(x.positions, y.positions, atol=1e-6)
                or not np.allclose(x.cell.array, y.cell.array, atol=1e-6)):
            raise SystemExit(f"frame {i} differs in species, positions or cell: not the same structures")


def _labels(frame):
    """A frame's labels in the form of a model's predictions (``predict_frames``)."""
    return {"energy": frame.energy, "forces": frame.forces, "stress": frame.stress}


def _row(name, metrics, count):
    return (f"{name:<22}{count:>7}{metrics['energy_mae']:>9.1f}{metrics['energy_rmse']:>9.1f}"
            f"{metrics['forces_mae']:>9.1f}{metrics['forces_rmse']:>9.1f}"
            f"{metrics.get('stress_mae', float('nan')):>9.2f}{metrics.get('stress_rmse', float('nan')):>9.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="labelled frames (the reference of the table)")
    parser.add_argument("b", help="the same structures, labelled another way")
    parser.add_argument("--test", type=int, default=0, help="only the test frames of the seeded split of this size")
    parser.add_argument("--valid", type=int, default=40, help="validation frames of that split")
    parser.add_argument("--model", action="append", default=[], help="also score this model against both")
    args = parser.parse_args()

    from fit_budget import split_frames

    from mlff.data.readers import LabelKeys, frame_from_atoms
    from mlff.evaluation import error_metrics, predict_frames

    atoms_a, atoms_b = read(args.a, ":"), read(args.b, ":")
    _check_same_structures(atoms_a, atoms_b)
    if args.test:  # split the pairs once, so both files keep the same frames
        atoms_a, atoms_b = map(list, zip(*split_frames(list(zip(atoms_a, atoms_b)), args.test, args.valid)[2]))
    frames_a = [frame_from_atoms(atoms, LabelKeys(), args.a) for atoms in atoms_a]
    frames_b = [frame_from_atoms(atoms, LabelKeys(), args.b) for atoms in atoms_b]

    header = (f"{'frames':<22}{'count':>7}{'E MAE':>9}{'E RMSE':>9}{'F MAE':>9}{'F RMSE':>9}{'S MAE':>9}{'S RMSE':>9}")
    print(f"{args.b} against {args.a}" + (f" (test split of {args.test})" if args.test else "")
          + "; meV/atom, meV/Å, meV/Å^3")
    print(header)
    print("-" * len(header))
    print(_row("all", error_metrics(frames_a, [_labels(f) for f in frames_b]), len(frames_a)))
    by_kind = defaultdict(list)
    for i, atoms in enumerate(atoms_a):
        by_kind[atoms.info.get("config_type", "-")].append(i)
    for kind, indices in sorted(by_kind.items()):
        metrics = error_metrics([frames_a[i] for i in indices], [_labels(frames_b[i]) for i in indices])
        print(_row(kind, metrics, len(indices)))
    for model in args.model:
        predictions = predict_frames(model, frames_a)
        print(f"\n{model}")
        print(_row(f"against {args.a.rsplit('/', 1)[-1]}"[:21], error_metrics(frames_a, predictions), len(frames_a)))
        print(_row(f"against {args.b.rsplit('/', 1)[-1]}"[:21], error_metrics(frames_b, predictions), len(frames_b)))


if __name__ == "__main__":
    main()
