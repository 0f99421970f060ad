"""Learning curves: validation force MAE vs number of training frames, and training throughput.

For each reference set (Cu EMT, ethanol GFN2-xTB), a fixed validation set is held out and models
are trained on growing training subsets with the same budget of epochs. Prints a table.

    python benchmarks/learning_curve.py [--sizes 25 50 100 200] [--epochs 30] [--l-max 0 1 2]
"""

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

from ase.io import read, write

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"cu_emt": ROOT / "datasets" / "cu_emt.extxyz", "ethanol_xtb": ROOT / "datasets" / "ethanol_xtb.extxyz"}


def run(name, frames, n_train, n_valid, epochs, l_max, workdir):
    from mlff.train import TrainConfig, train

    folder = Path(workdir) / f"{name}-{n_train}-l{l_max}"
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "train.extxyz", frames[n_valid:n_valid + n_train])
    write(folder / "valid.extxyz", frames[:n_valid])
    config = TrainConfig(
        train_file=str(folder / "train.extxyz"), valid_file=str(folder / "valid.extxyz"), test_fraction=0.0,
        model={"preset": "small", "r_cut": 4.5, "l_max": l_max, "dtype": "float32"},
        max_epochs=epochs, batch_size=4, learning_rate=0.01, output_dir=str(folder / "run"),
        progress=False, tensorboard="off", seed=0,
    )
    start = time.perf_counter()
    result = train(config)
    elapsed = time.perf_counter() - start
    with open(folder / "run" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    train_seconds = sum(float(r["seconds"]) for r in rows)
    return {"dataset": name, "l_max": l_max, "n_train": n_train, "forces_mae": result.best_metrics["forces_mae"],
            "energy_mae": result.best_metrics["energy_mae"], "frames_per_s": n_train * epochs / train_seconds,
            "wall_s": elapsed}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--valid", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--l-max", type=int, nargs="+", default=[1])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"learning curves: preset small (r_cut 4.5, float32), {args.epochs} epochs, batch 4, "
          f"{args.valid} validation frames, {args.threads} threads")
    header = f"{'dataset':<12}{'l_max':>6}{'n_train':>8}{'F MAE meV/Å':>13}{'E MAE meV/at':>14}{'frames/s':>10}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.datasets:
            frames = read(DATASETS[name], index=":")
            for l_max in args.l_max:
                for n in args.sizes:
                    if args.valid + n > len(frames):
                        continue
                    r = run(name, frames, n, args.valid, args.epochs, l_max, workdir)
                    print(f"{r['dataset']:<12}{r['l_max']:>6}{r['n_train']:>8}{r['forces_mae']:>13.1f}"
                          f"{r['energy_mae']:>14.2f}{r['frames_per_s']:>10.1f}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
