"""Accuracy at a fixed wall-time budget: train mlff variants on one dataset with ``time_limit``,
then evaluate each deployed model on held-out test frames. Prints a table.

    python benchmarks/fit_budget.py --data datasets/al_gpaw.extxyz --budget 10m \\
        --variant defaults \\
        --variant final_stage=0.3 final_energy_weight=100 final_learning_rate=0.001

Each ``--variant`` is a list of training options (YAML values; ``model.KEY=VALUE`` sets a model
option); the first word may be a name without ``=``. Frames are split once (seeded): ``--test``
frames held out, ``--valid`` frames for validation, the rest for training (with the frames of
``--extra-train`` files, which change neither the validation nor the test frames).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from ase.io import read, write


def split_frames(frames, n_test, n_valid):
    """The seeded split of the budget benchmarks (also ``fit_peers.py``): (train, valid, test)."""
    order = np.random.default_rng(0).permutation(len(frames))
    test, valid, train = order[:n_test], order[n_test:n_test + n_valid], order[n_test + n_valid:]
    return [frames[i] for i in train], [frames[i] for i in valid], [frames[i] for i in test]


def add_split_arguments(parser, budget, test):
    """The options both budget benchmarks share (also ``fit_peers.py``): data, budget, split, model."""
    parser.add_argument("--data", required=True)
    parser.add_argument("--budget", default=budget, help="wall time (time_limit) of each training run")
    parser.add_argument("--test", type=int, default=test)
    parser.add_argument("--valid", type=int, default=40)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--dtype", default="float32")


def parse_variant(words):
    name = words[0] if words and "=" not in words[0] else None
    options, model = {}, {}
    for word in words[1 if name else 0:]:
        key, _, value = word.partition("=")
        target = model if key.startswith("model.") else options
        target[key.removeprefix("model.")] = yaml.safe_load(value)
    return name or " ".join(words) or "defaults", options, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_split_arguments(parser, budget="10m", test=100)
    parser.add_argument("--variant", nargs="*", action="append", default=None)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--extra-train", nargs="+", default=[], metavar="FILE",
                        help="labelled frames added to the training split only (the validation and test "
                             "frames stay those of --data); FILE@:8 takes the first 8 (ASE's index syntax)")
    args = parser.parse_args()

    import mlff
    from mlff.data.readers import LabelKeys, read_frames
    from mlff.evaluation import error_metrics, predict_frames

    train, valid, test = split_frames(read(args.data, ":"), args.test, args.valid)
    for path in args.extra_train:
        name, _, index = path.partition("@")
        frames = read(name, index or ":")
        train = train + (frames if isinstance(frames, list) else [frames])
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mlff-fit-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for name, subset in (("train", train), ("valid", valid), ("test", test)):
        write(workdir / f"{name}.extxyz", subset)
    test_frames = read_frames(str(workdir / "test.extxyz"), LabelKeys())
    print(f"{args.data}: {len(train)} train / {len(valid)} valid / {len(test)} test frames; budget {args.budget} "
          f"per run; preset {args.preset}, {args.dtype}; mlff {mlff.__version__}; work in {workdir}")
    header = f"{'variant':<60}{'epochs':>7}{'E MAE meV/at':>14}{'F MAE meV/Å':>13}{'S MAE meV/Å3':>14}{'wall s':>8}"
    print(header)
    print("-" * len(header))
    for index, words in enumerate(args.variant or [["defaults"]]):
        name, options, model = parse_variant(words)
        run_dir = workdir / f"run{index}"
        config = {"train_file": str(workdir / "train.extxyz"), "valid_file": str(workdir / "valid.extxyz"), "test_fraction": 0.0,
                  "model": {"preset": args.preset, "dtype": args.dtype, **model}, "time_limit": args.budget,
                  "max_epochs": 100000, "output_dir": str(run_dir), "progress": False, "tensorboard": "off",
                  **options}
        (workdir / f"run{index}.yaml").write_text(yaml.safe_dump(config))
        from mlff.train import TrainConfig, train

        start = time.perf_counter()
        result = train(TrainConfig.from_dict(config))
        wall = time.perf_counter() - start
        metrics = error_metrics(test_frames, predict_frames(result.model_path, test_frames))
        row = {"variant": name, "epochs": result.epochs, **metrics, "wall_s": wall}
        (run_dir / "test_metrics.json").write_text(json.dumps(row, indent=2))
        print(f"{name[:59]:<60}{result.epochs:>7}{metrics['energy_mae']:>14.1f}{metrics['forces_mae']:>13.1f}"
              f"{metrics.get('stress_mae', float('nan')):>14.2f}{wall:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
