"""Training throughput side by side: mlff, MACE and NequIP training models of matched size on the
same files, each through its own command-line tool, on the same machine, one after the other.

Matched size (as in docs/performance.md): 2 message-passing layers, 64 channels, r_cut 5 Å, 8 Bessel
functions, radial MLP of width 64; mlff and NequIP with l_max 2 and natural parity only, MACE with
its comparable ``64x0e+64x1o`` hidden irreps, spherical harmonics up to 2 and correlation order 3.
Energy + force loss, the same batch size and dtype, validation every epoch (all three do that by
default). Each tool runs twice, for ``--epochs`` and ``2 x --epochs`` epochs: the difference of the
two wall times divided by the extra epochs is the time per epoch without the start-up (imports,
reading data, neighbour lists), and frames/s = training frames / that time.

Peers live in virtual environments of their own (``pip install mace-torch``, ``pip install nequip``):

    python benchmarks/train_peers.py --train train.xyz --valid valid.xyz \\
        --energy-key REF_energy --forces-key REF_forces \\
        --mace $PEERS_ROOT/mace/bin/mace_run_train --nequip $PEERS_ROOT/nequip/bin/nequip-train

(peers left out are skipped). Prints a table.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import yaml
from ase.io import read


WARM = "mlff_compile_warm"  # the untimed run that compiles mlff's step once for the timed runs


def _mlff(args, workdir, epochs, compile_=False, name=None):
    name = name or f"mlff{'_compile' if compile_ else ''}_{epochs}"
    config = {
        "train_file": os.path.abspath(args.train), "valid_file": os.path.abspath(args.valid), "test_fraction": 0.0,
        "energy_key": args.energy_key, "forces_key": args.forces_key, "stress_key": "no_stress_label",
        "model": {"num_layers": 2, "num_features": 64, "l_max": 2, "parity": False, "r_cut": 5.0,
                  "num_basis": 8, "cutoff_p": 6, "radial_hidden": 64, "radial_layers": 2,
                  "dtype": args.dtype},
        "batch_size": args.batch_size, "max_epochs": epochs, "stress_weight": 0.0,
        "output_dir": os.path.join(workdir, name), "progress": False, "tensorboard": "off",
        "seed": 0, "compile": compile_,
    }
    if compile_ and name != WARM:  # timed runs load the package the warm-up run compiled (its cache)
        shutil.copytree(os.path.join(workdir, WARM, "compiled"), os.path.join(workdir, name, "compiled"),
                        dirs_exist_ok=True)
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    return [os.path.join(os.path.dirname(sys.executable), "mlff"), "train", path]


def _mace(args, workdir, epochs):
    return [args.mace, "--name", f"mace_{epochs}", "--train_file", os.path.abspath(args.train),
            "--valid_file", os.path.abspath(args.valid), "--energy_key", args.energy_key,
            "--forces_key", args.forces_key, "--model", "MACE", "--hidden_irreps", "64x0e+64x1o",
            "--max_ell", "2", "--correlation", "3", "--num_interactions", "2", "--r_max", "5.0",
            "--num_radial_basis", "8", "--batch_size", str(args.batch_size),
            "--valid_batch_size", str(args.batch_size), "--max_num_epochs", str(epochs),
            "--device", "cpu", "--default_dtype", args.dtype, "--E0s", "average", "--seed", "0",
            "--work_dir", os.path.join(workdir, f"mace_{epochs}")]


def _nequip(args, workdir, epochs, species, checkpoint_dir=None):
    """``nequip-train`` at the matched size; ``checkpoint_dir``: also save the last epoch's
    checkpoint there (benchmarks/gpu/peers.py packages it)."""
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": args.batch_size}
    config = {
        "run": ["train"], "seed": 0, "cutoff_radius": 5.0, "model_type_names": species,
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule", "seed": 0,
            "train_file_path": os.path.abspath(args.train), "val_file_path": os.path.abspath(args.valid),
            "key_mapping": {args.energy_key: "total_energy", args.forces_key: "forces"},
            "transforms": [
                {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                 "model_type_names": species,
                 "chemical_species_to_atom_type_map": {s: s for s in species}},
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": 5.0},
            ],
            "train_dataloader": loader, "val_dataloader": loader,
        },
        "trainer": {"_target_": "lightning.Trainer", "max_epochs": epochs, "check_val_every_n_epoch": 1,
                    "enable_progress_bar": False, "logger": False, "enable_checkpointing": checkpoint_dir is not None},
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "loss": {"_target_": "nequip.train.EnergyForceLoss", "per_atom_energy": True,
                     "coeffs": {"total_energy": 1.0, "forces": 1.0}},
            "val_metrics": {"_target_": "nequip.train.EnergyForceMetrics",
                            "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0}},
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.01},
            "model": {"_target_": "nequip.model.NequIPGNNModel", "seed": 0, "model_dtype": args.dtype,
                      "type_names": species, "r_max": 5.0, "l_max": 2, "parity": False, "num_layers": 2,
                      "num_features": 64, "radial_mlp_depth": 2, "radial_mlp_width": 64, "num_bessels": 8,
                      "polynomial_cutoff_p": 6, "avg_num_neighbors": 42.0,
                      "per_type_energy_shifts": 0.0, "per_type_energy_scales": 1.0},
        },
    }
    if checkpoint_dir is not None:
        config["trainer"]["callbacks"] = [{"_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                                           "dirpath": str(checkpoint_dir), "filename": "last", "save_last": False}]
    directory = os.path.join(workdir, f"nequip_{epochs}")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.yaml"), "w") as handle:
        yaml.safe_dump(config, handle)
    return [args.nequip, "-cp", directory, "-cn", "config", f"hydra.run.dir={directory}/out"]


def _wall(command, cwd, env, log):
    start = time.perf_counter()
    with open(log, "w") as handle:
        result = subprocess.run(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = open(log).read().strip().splitlines()[-3:]
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {' | '.join(tail)}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--valid", required=True)
    parser.add_argument("--energy-key", default="energy")
    parser.add_argument("--forces-key", default="forces")
    parser.add_argument("--epochs", type=int, default=3, help="the shorter run; the longer has twice as many")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mace", help="MACE's mace_run_train in its own venv")
    parser.add_argument("--nequip", help="NequIP's nequip-train in its own venv")
    parser.add_argument("--compile", action="store_true",
                        help="also time mlff with compile: true (compiled once by a warm-up run, which is not timed)")
    parser.add_argument("--workdir", help="where runs are written (default: a temporary folder)")
    args = parser.parse_args()

    frames = read(args.train, ":")
    atoms = sum(len(a) for a in frames)
    species = sorted({s for a in frames for s in a.get_chemical_symbols()})
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="mlff_train_peers_"))
    os.makedirs(workdir, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONWARNINGS="ignore")
    tools = {"mlff": lambda e: _mlff(args, workdir, e)}
    if args.compile:
        _wall(_mlff(args, workdir, 1, True, WARM), workdir, env, os.path.join(workdir, f"{WARM}.log"))
        tools["mlff+compile"] = lambda e: _mlff(args, workdir, e, compile_=True)
    if args.mace:
        tools["MACE"] = lambda e: _mace(args, workdir, e)
    if args.nequip:
        tools["NequIP"] = lambda e: _nequip(args, workdir, e, species)
    print(f"training throughput: {len(frames)} training frames ({atoms} atoms), batch {args.batch_size}, "
          f"{args.dtype}, {args.threads} threads, {args.epochs} and {2 * args.epochs} epochs; logs in {workdir}")
    print(f"{'tool':<13}{'s/epoch':>9}{'frames/s':>10}{'atoms/s':>9}{'start-up s':>12}")
    for name, command in tools.items():
        try:
            short = _wall(command(args.epochs), workdir, env, os.path.join(workdir, f"{name}_{args.epochs}.log"))
            long = _wall(command(2 * args.epochs), workdir, env, os.path.join(workdir, f"{name}_{2 * args.epochs}.log"))
        except RuntimeError as error:
            print(f"{name:<13} failed: {error}")
            continue
        epoch = (long - short) / args.epochs
        print(f"{name:<13}{epoch:>9.2f}{len(frames) / epoch:>10.1f}{atoms / epoch:>9.0f}"
              f"{short - args.epochs * epoch:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
