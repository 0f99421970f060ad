"""Accuracy at a fixed wall-time budget, side by side: mlff, MACE, NequIP and SevenNet trained on the same
split of one dataset, each through its own command-line tool and with its own defaults, each for
the same wall time, then scored on the same held-out frames by the same code
(``mlff.evaluation.error_metrics``). Prints a table.

    python benchmarks/fit_peers.py --data datasets/almgsi_gpaw.extxyz --budget 20m \\
        --mace $PEERS_ROOT/mace/bin/mace_run_train --nequip $PEERS_ROOT/nequip/bin/nequip-train \\
        --sevenn $PEERS_ROOT/sevenn/bin/sevenn

Runs go ``--parallel`` at a time, each pinned to its own ``--threads`` cores with ``taskset`` (so
two runs at once on two cores each get one core to themselves; ``--cores`` names which cores);
peers left out are skipped.
``--share`` starts every run at once, unpinned, on ``--threads`` threads each: the kernel shares
the machine's cores among them (three runs on two cores get about two thirds of a core each), so
three codes fit one budget's wall time, each slowed the same way.

- **mlff**: a config with only the files, ``time_limit`` and the ``medium`` preset in float32
  (``--preset``, ``--dtype``); everything else is mlff's default. ``mlff_defaults`` (in
  ``--tools``) leaves out the model options too.
- **MACE**: ``mace_run_train`` with its defaults at the size users start from (``64x0e+64x1o``,
  L=1, 2 layers, r_max 5 Å, float64, E0s from the training average, batch 10), stopped by
  ``timeout`` after the budget plus ``--startup`` seconds for its start-up, then finished from its
  best checkpoint with no further epoch (``--restart_latest`` with ``--max_num_epochs`` at that
  epoch), which writes the model.
- **NequIP**: ``nequip-train`` at the size of mlff's ``medium`` preset (3 layers, 32 channels,
  l_max 2, parity, float32, batch 10), the set-up of its examples (Adam 0.01 with plateau, EMA,
  energy + force + stress loss 1:1:1, data-derived shifts and scales), lightning's ``max_time``
  as the budget; its best checkpoint (validation loss) predicts.
- **SevenNet**: ``sevenn train`` with its ``base`` preset as it prints it (``sevenn preset base``:
  3 layers, 32 channels, l_max 2, no parity, r_cut 5 Å, float32, batch 4, Adam 0.005 with
  exponential decay, force weight 0.1, stress in the loss) and only the files and epochs changed,
  stopped by ``timeout`` after the budget plus ``--startup``; its best checkpoint (validation loss,
  ``checkpoint_best.pth``) predicts. Its reader takes the labels as ASE's ``energy``/``forces``/
  ``stress``: it gets copies of the split with those keys.

Frames are split once (seeded, by ``fit_budget.split_frames``): ``--test`` held out, ``--valid`` for
validation (every tool validates on the same frames each epoch), the rest for training.
"""

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml
from ase.io import read, write
from fit_budget import add_split_arguments, split_frames  # the same split as fit_budget.py (this script's folder is on sys.path)

KEYS = {"energy": "REF_energy", "forces": "REF_forces", "stress": "REF_stress"}

# each tool's ASE calculator on its fitted model (``tool``, ``model``), in the tool's venv
CALCULATOR = """
if tool == "mace":
    from mace.calculators import MACECalculator
    calc = MACECalculator(model_paths=model, device="cpu", default_dtype="float64")
elif tool == "nequip":
    from nequip.integrations.ase import NequIPCalculator
    calc = NequIPCalculator._from_saved_model(model, device="cpu", chemical_species_to_atom_type_map=True)
elif tool == "sevenn":
    from sevenn.calculator import SevenNetCalculator
    calc = SevenNetCalculator(model, file_type="checkpoint", device="cpu")
else:
    from mlff import MLFFCalculator
    calc = MLFFCalculator(model)
"""

PREDICT = """
import sys, numpy as np, torch
from ase.io import read
from ase.stress import voigt_6_to_full_3x3_stress
torch.set_num_threads(1)
tool, model, test, out = sys.argv[1:5]
""" + CALCULATOR + """
E, F, S = [], [], []
for atoms in read(test, ":"):
    atoms = atoms.copy()
    atoms.calc = calc
    E.append(atoms.get_potential_energy())
    F.append(atoms.get_forces())
    S.append(voigt_6_to_full_3x3_stress(atoms.get_stress()))
epoch = torch.load(model, map_location="cpu", weights_only=False)["epoch"] if tool in ("nequip", "sevenn") else -1
np.savez(out, energy=np.array(E), forces=np.concatenate(F), stress=np.array(S), epoch=epoch)
"""


# each tool's fitted potential through mlff.physics (which needs only ASE and NumPy), in the tool's venv
PHYSICS = """
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from mlff.physics import crystal_properties, parse_crystal
tool, model, out = sys.argv[2:5]
""" + CALCULATOR + """
records = {}
for text in sys.argv[5:]:
    try:
        records[text] = crystal_properties(parse_crystal(text), calc)
    except ValueError as error:   # e.g. the minimum outside the scanned volumes
        records[text] = {"error": str(error)}
json.dump(records, open(out, "w"))
"""


def physics_of(tool, python, model, work, crystals):
    """``mlff.physics.crystal_properties`` of each crystal with the tool's fitted potential."""
    out = work / f"{tool}_physics.json"
    subprocess.run([python, "-c", PHYSICS, str(Path(__file__).resolve().parents[1]), tool, str(model), str(out)]
                   + list(crystals), check=True, env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def physics_row(records, reference_path):
    """Errors against the reference file: each crystal's a0 and B (relative), energy (meV/atom),
    elastic constants where the reference has them, and the phases' energies above the lowest."""
    from mlff.physics import compare, phase_energies, read_reference

    row, for_phases = {}, []
    for text, ours in records.items():
        if "error" in ours:
            row[text] = ours["error"]
            continue
        theirs = read_reference(reference_path, ours["formula"], text)
        if theirs is None:
            continue
        comparison = compare(ours, theirs)
        row[text] = {key: (value["relative"] if value.get("relative") is not None else value["difference"])
                     for key, value in comparison.items()}
        for_phases.append({"crystal": text, "formula": ours["formula"], "model": ours, "reference": theirs,
                           "comparison": comparison})
    row["phases"] = phase_energies(for_phases)
    return row


def seconds(budget: str) -> float:
    from mlff.train.budget import parse_duration

    return parse_duration(budget)


def write_split(frames, path):
    """Write frames with the labels under REF_ keys (plain ``energy`` clashes with ASE's
    calculator fields in MACE's reader)."""
    out = []
    for atoms in frames:
        copy = atoms.copy()
        copy.calc = None
        copy.info = {KEYS["energy"]: atoms.get_potential_energy(), KEYS["stress"]: atoms.get_stress(voigt=False)}
        copy.arrays[KEYS["forces"]] = atoms.get_forces()
        out.append(copy)
    write(path, out)


def run_mlff(args, work, cores, name="mlff", model=None):
    config = {"train_file": str(work / "train.extxyz"), "valid_file": str(work / "valid.extxyz"), "test_fraction": 0.0,
              "energy_key": KEYS["energy"], "forces_key": KEYS["forces"], "stress_key": KEYS["stress"],
              "time_limit": args.budget, "max_epochs": 1000000, "output_dir": str(work / name),
              "progress": False, "tensorboard": "off"}
    if model:
        config["model"] = model
    (work / f"{name}.yaml").write_text(yaml.safe_dump(config))
    mlff = os.path.join(os.path.dirname(sys.executable), "mlff")
    run([mlff, "train", str(work / f"{name}.yaml")], work / f"{name}.log", cores, args.threads)
    summary = json.loads((work / name / "training_summary.json").read_text())
    return work / name / "model.pt", summary.get("best_epoch")


def run_mace(args, work, cores):
    base = [args.mace, "--name", "mace", "--train_file", str(work / "train.extxyz"),
            "--valid_file", str(work / "valid.extxyz"), "--energy_key", KEYS["energy"],
            "--forces_key", KEYS["forces"], "--stress_key", KEYS["stress"], "--model", "MACE",
            "--hidden_irreps", "64x0e+64x1o", "--max_L", "1", "--r_max", "5.0", "--num_interactions", "2",
            "--batch_size", "10", "--valid_batch_size", "10", "--device", "cpu", "--default_dtype", "float64",
            "--E0s", "average", "--seed", "0", "--work_dir", str(work / "mace")]
    limit = seconds(args.budget) + args.startup
    run(["timeout", f"{limit:.0f}"] + base + ["--max_num_epochs", "1000000"], work / "mace.log", cores, args.threads,
        ok=(0, 124))
    best = [int(m.group(1)) for f in (work / "mace" / "checkpoints").iterdir()
            if (m := re.search(r"epoch-(\d+)", f.name))]
    if not best:
        raise RuntimeError("MACE wrote no checkpoint within the budget")
    run(base + ["--max_num_epochs", str(max(best)), "--restart_latest"], work / "mace_final.log", cores, args.threads)
    models = [p for p in (work / "mace").rglob("mace.model")] + [p for p in work.glob("mace.model")]
    return models[0], max(best) + 1  # checkpoint names count epochs from 0


def run_nequip(args, work, cores, species):
    budget = int(seconds(args.budget))
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": 10}
    mapper = {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper", "model_type_names": species,
              "chemical_species_to_atom_type_map": {s: s for s in species}}
    config = {
        "run": ["train"], "seed": 0, "cutoff_radius": 5.0, "model_type_names": species,
        "data": {"_target_": "nequip.data.datamodule.ASEDataModule", "seed": 0,
                 "train_file_path": str(work / "train.extxyz"), "val_file_path": str(work / "valid.extxyz"),
                 "key_mapping": {KEYS["energy"]: "total_energy", KEYS["forces"]: "forces", KEYS["stress"]: "stress"},
                 "transforms": [mapper, {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": 5.0}],
                 "train_dataloader": dict(loader, shuffle=True), "val_dataloader": loader,
                 "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager", "type_names": species}},
        "trainer": {"_target_": "lightning.Trainer", "max_epochs": 1000000, "check_val_every_n_epoch": 1,
                    "enable_progress_bar": False, "log_every_n_steps": 20,
                    "max_time": f"00:{budget // 3600:02d}:{budget % 3600 // 60:02d}:{budget % 60:02d}",
                    "callbacks": [{"_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "dirpath": str(work / "nequip"), "filename": "best", "mode": "min",
                                   "monitor": "val0_epoch/weighted_sum", "save_last": True, "save_top_k": 1}]},
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "loss": {"_target_": "nequip.train.EnergyForceStressLoss", "per_atom_energy": True,
                     "coeffs": {"total_energy": 1.0, "forces": 1.0, "stress": 1.0}},
            "val_metrics": {"_target_": "nequip.train.EnergyForceStressMetrics",
                            "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0, "stress_mae": 1.0}},
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.01},
            "lr_scheduler": {"monitor": "val0_epoch/weighted_sum",
                             "scheduler": {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                                           "factor": 0.6, "patience": 10}},
            "model": {"_target_": "nequip.model.NequIPGNNModel", "seed": 0, "model_dtype": "float32",
                      "type_names": species, "r_max": 5.0, "l_max": 2, "parity": True, "num_layers": 3,
                      "num_features": 32, "radial_mlp_depth": 2, "radial_mlp_width": 64, "num_bessels": 8,
                      "polynomial_cutoff_p": 6,
                      "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
                      "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
                      "per_type_energy_scales": "${training_data_stats:forces_rms}"}},
    }
    (work / "nequip").mkdir(exist_ok=True)
    (work / "nequip" / "config.yaml").write_text(yaml.safe_dump(config))
    run([args.nequip, "-cp", str(work / "nequip"), "-cn", "config", f"hydra.run.dir={work / 'nequip' / 'out'}"],
        work / "nequip.log", cores, args.threads)
    return work / "nequip" / "best.ckpt", None


def run_sevenn(args, work, cores):
    from ase.calculators.singlepoint import SinglePointCalculator

    folder = work / "sevenn"
    folder.mkdir(exist_ok=True)
    for name in ("train", "valid"):  # the labels where SevenNet's reader looks (ASE's calculator fields)
        frames = []
        for atoms in read(work / f"{name}.extxyz", ":"):
            labels = dict(energy=atoms.info.pop(KEYS["energy"]), forces=atoms.arrays.pop(KEYS["forces"]),
                          stress=atoms.info.pop(KEYS["stress"]))
            atoms.calc = SinglePointCalculator(atoms, **labels)
            frames.append(atoms)
        write(folder / f"{name}.extxyz", frames)
    preset = subprocess.run([args.sevenn, "preset", "base"], capture_output=True, text=True, check=True).stdout
    config = yaml.safe_load(preset)
    config["train"].update(epoch=1000000, per_epoch=1000000)  # the budget stops it; only the best checkpoint
    config["data"].update(load_trainset_path=[str(folder / "train.extxyz")],
                          load_validset_path=[str(folder / "valid.extxyz")])
    config["data"].pop("load_testset_path", None)
    (folder / "input.yaml").write_text(yaml.safe_dump(config))
    limit = seconds(args.budget) + args.startup
    run(["timeout", f"{limit:.0f}", args.sevenn, "train", str(folder / "input.yaml"), "-w", str(folder)],
        work / "sevenn.log", cores, args.threads, ok=(0, 124))
    best = next(folder.rglob("checkpoint_best.pth"), None)
    if best is None:
        raise RuntimeError("SevenNet wrote no best checkpoint within the budget")
    return best, None


def run(command, log, cores, threads, ok=(0,)):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    pinned = (["taskset", "-c", ",".join(map(str, cores))] if cores else []) + list(command)
    with open(log, "w") as handle:
        # in the work folder: lightning writes lightning_logs/ into the current directory
        code = subprocess.run(pinned, env=env, cwd=Path(log).parent, stdout=handle,
                              stderr=subprocess.STDOUT).returncode
    if code not in ok:
        tail = " | ".join(Path(log).read_text().strip().splitlines()[-3:])
        raise RuntimeError(f"{command[0]} exited {code}: {tail}")


def predict_peer(tool, python, model, work):
    out = work / f"{tool}_pred.npz"
    subprocess.run([python, "-c", PREDICT, tool, str(model), str(work / "test.extxyz"), str(out)], check=True,
                   env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = np.load(out)
    sizes = np.cumsum([0] + [len(a) for a in read(work / "test.extxyz", ":")])
    return int(data["epoch"]), [{"energy": float(data["energy"][k]), "forces": data["forces"][sizes[k]:sizes[k + 1]],
             "stress": data["stress"][k]} for k in range(len(sizes) - 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_split_arguments(parser, budget="20m", test=80)
    parser.add_argument("--mace", help="MACE's mace_run_train in its own venv")
    parser.add_argument("--nequip", help="NequIP's nequip-train in its own venv")
    parser.add_argument("--sevenn", help="SevenNet's sevenn command in its own venv")
    parser.add_argument("--parallel", type=int, default=2, help="runs at the same time, each on its own cores")
    parser.add_argument("--threads", type=int, default=1, help="cores (and threads) of each run")
    parser.add_argument("--cores", type=int, nargs="+",
                        help="the cores to pin to (default the first --parallel x --threads), e.g. --cores 1 to "
                             "race on core 1 while another benchmark has core 0")
    parser.add_argument("--share", action="store_true",
                        help="start every run at once, unpinned, sharing the machine's cores (ignores --parallel)")
    parser.add_argument("--startup", type=float, default=30.0,
                        help="seconds added to MACE's and SevenNet's timeouts for start-up")
    parser.add_argument("--tools", default="mlff,nequip,mace,sevenn",
                        help="which to run, in this order (mlff_defaults: mlff with no model options at all)")
    parser.add_argument("--workdir")
    parser.add_argument("--reference-values", help="physical reference (the JSON `mlff physics` reads): "
                        "compare each tool's crystals (--crystals) with it")
    parser.add_argument("--crystals", nargs="+", default=[], help="as `mlff physics` takes them, e.g. Al:fcc:4.04")
    args = parser.parse_args()

    from mlff.data.readers import LabelKeys, read_frames
    from mlff.evaluation import error_breakdown, error_metrics, predict_frames

    frames = read(args.data, ":")
    train, valid, test = split_frames(frames, args.test, args.valid)
    species = sorted({s for a in frames for s in a.get_chemical_symbols()})
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mlff-fit-peers-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for name, subset in (("train", train), ("valid", valid), ("test", test)):
        write_split(subset, work / f"{name}.extxyz")
    test_frames = read_frames(str(work / "test.extxyz"), LabelKeys(*KEYS.values()))

    runners = {"mlff": lambda c: run_mlff(args, work, c, model={"preset": args.preset, "dtype": args.dtype}),
               "mlff_defaults": lambda c: run_mlff(args, work, c, name="mlff_defaults"),
               "mace": (lambda c: run_mace(args, work, c)) if args.mace else None,
               "nequip": (lambda c: run_nequip(args, work, c, species)) if args.nequip else None,
               "sevenn": (lambda c: run_sevenn(args, work, c)) if args.sevenn else None}
    tools = [t for t in args.tools.split(",") if runners.get(t)]
    print(f"{args.data}: {len(train)} train / {len(valid)} valid / {len(test)} test frames, species {species}; "
          f"budget {args.budget} each, " + (f"all at once on {os.cpu_count()} shared cores, {args.threads} thread(s) "
          f"each" if args.share else f"{args.parallel} at a time on {args.threads} pinned core(s) each") +
          f"; work in {work}", flush=True)

    cores = args.cores or list(range(args.parallel * args.threads))
    if not args.share and len(cores) < args.parallel * args.threads:
        parser.error(f"--cores names {len(cores)} core(s); --parallel {args.parallel} x --threads {args.threads} "
                     f"needs {args.parallel * args.threads}")
    free = queue.Queue()
    for k in range(len(tools) if args.share else args.parallel):
        free.put(None if args.share else cores[k * args.threads:(k + 1) * args.threads])
    results = {}

    def job(tool):
        cores = free.get()
        start = time.perf_counter()
        try:
            results[tool] = runners[tool](cores) + (time.perf_counter() - start,)
        except Exception as error:  # reported in the table
            results[tool] = error
        finally:
            free.put(cores)

    threads = [threading.Thread(target=job, args=(tool,)) for tool in tools]
    for thread in threads:
        thread.start()
        time.sleep(1.0)  # start in the given order
    for thread in threads:
        thread.join()

    header = (f"{'tool':<14}{'best epoch':>11}{'E MAE meV/at':>14}{'tail E MAE':>12}{'tail bias':>11}"
              f"{'F MAE meV/Å':>13}{'S MAE meV/Å3':>14}{'wall s':>8}")
    print(header)
    print("-" * len(header))
    table = {}
    for tool in tools:
        result = results[tool]
        if isinstance(result, Exception):
            print(f"{tool:<14} failed: {result}")
            continue
        model, epochs, wall = result
        if tool.startswith("mlff"):
            python = sys.executable
            predictions = predict_frames(str(model), test_frames)
        else:
            python = os.path.join(os.path.dirname(getattr(args, tool)), "python")
            epoch, predictions = predict_peer(tool, python, model, work)
            epochs = epochs if epoch < 0 else epoch + (tool == "nequip")  # lightning counts from 0, SevenNet from 1
        metrics = error_metrics(test_frames, predictions)
        tail = error_breakdown(test_frames, predictions)["tail"]  # the lowest-energy 10 % of the test frames
        table[tool] = {"best_epoch": epochs, "wall_s": wall, **metrics, "tail": tail}
        if args.crystals:
            table[tool]["physics"] = physics_of("mlff" if tool.startswith("mlff") else tool, python, model, work,
                                                args.crystals)
            if args.reference_values:
                table[tool]["physics_errors"] = physics_row(table[tool]["physics"], args.reference_values)
        print(f"{tool:<14}{epochs if epochs is not None else '-':>11}{metrics['energy_mae']:>14.1f}"
              f"{tail['energy_mae']:>12.1f}{tail['energy_mean_error']:>+11.1f}"
              f"{metrics['forces_mae']:>13.1f}{metrics.get('stress_mae', float('nan')):>14.2f}{wall:>8.0f}",
              flush=True)
    for tool, row in table.items():
        if "physics_errors" in row:
            print(f"{tool} physics against {args.reference_values} (relative errors; energies in meV/atom): "
                  + json.dumps(row["physics_errors"]))
    (work / "results.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
