"""Choose training defaults on a suite of DFT sets, never on one: train each settings variant on
each set, score it on held-out errors, the low-energy tail and the physics table, rank the
variants per (set, score), and print each variant's mean rank.

    OMP_NUM_THREADS=1 python benchmarks/defaults_sweep.py --sets si,mgo \\
        --variant defaults --variant loss=mse --variant mse_stress loss=mse stress_weight=1000

Each ``--variant`` is a list of training options (YAML values; ``model.KEY=VALUE`` sets a model
option), the first word optionally a name (as in ``fit_budget.py``). Results go to ``--out`` (JSON,
one record per set and variant) as each run ends; a second call skips the runs already there, so
a sweep can be stopped and resumed, and variants added later.

Scores (all lower is better):

- ``E MAE``, ``F MAE``: test energy per atom (meV/atom) and force (meV/Å) mean absolute errors.
- ``tail``: energy MAE of the lowest-energy 10 % of all the set's frames (by energy per atom above
  the composition baseline), training frames included: the configurations MD visits most and the
  ground states, which a fit with a small mean error can still miss.
- ``physics``: for sets with a reference (``SUITE``), the mean relative error of a0, B, C11, C12,
  C44 (ions relaxed), and ``E0``: the error of the equilibrium crystal's energy per atom (meV/atom).
- ``phases``: for sets with other crystals of the same composition in their reference, the mean
  error of their energies above the ground state (meV/atom; relative phase energies).

The suite (``SUITE``): a covalent solid (silicon), an ionic solid (MgO), a metallic alloy
(Al-Mg-Si) and a molecule (ethanol, its minimum and MD at 500 K), all labelled with DFT by the generators in ``datasets/``.
"""

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.io import read, write

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fit_budget import parse_variant, split_frames  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "datasets"

# name: data file, held-out test and validation frames, epochs per run (about 4 minutes on one core
# each), crystals with stored DFT references
SUITE = {
    "si": {"data": "si_gpaw.extxyz", "test": 16, "valid": 8, "epochs": 300,
           "crystals": [("Si:diamond:5.476", "si_gpaw_reference.json")],
           "phases": [("Si:fcc:3.87", "si_gpaw_reference.json"), ("Si:bcc:3.08", "si_gpaw_reference.json"),
                      ("Si:sc:2.53", "si_gpaw_reference.json")]},
    "mgo": {"data": "mgo_gpaw.extxyz", "test": 16, "valid": 8, "epochs": 300,
            "crystals": [("MgO:rocksalt:4.26", "mgo_gpaw_reference.json")]},
    "almgsi": {"data": "almgsi_gpaw_k5.extxyz", "test": 60, "valid": 30, "epochs": 80, "crystals": []},
    "ethanol": {"data": "ethanol_pyscf.extxyz", "test": 30, "valid": 15, "epochs": 150, "crystals": []},
}
SCORES = ("E MAE", "F MAE", "tail", "physics", "E0", "phases")
PHYSICS = ("lattice_constant", "bulk_modulus", "C11", "C12", "C44")


def physics_scores(model_path, crystals, phases=()):
    """Mean relative error of the elastic table and |E0 error| (meV/atom) over the set's crystals;
    with ``phases`` (other crystals of the same composition, equation of state only), the mean
    |error| of the energies above the lowest crystal (meV/atom)."""
    from mlff.calculators import MLFFCalculator
    from mlff.physics import compare, crystal_properties, parse_crystal, phase_energies, read_reference

    calc = MLFFCalculator(str(model_path))
    relative, energy, tables, records = [], [], {}, []
    for (text, reference_file), elastic in [(c, True) for c in crystals] + [(p, False) for p in phases]:
        atoms = parse_crystal(text)
        reference = read_reference(str(DATA / reference_file), atoms.get_chemical_formula(), text)
        try:
            ours = crystal_properties(atoms, calc, elastic=elastic)
        except ValueError as error:  # e.g. no energy minimum near the reference's volume
            print(f"{text}: {error}")
            return {"physics": float("inf"), "E0": float("inf"), "phases": float("inf"), "tables": {}}
        records.append({"crystal": text, "formula": ours["formula"], "model": ours, "reference": reference})
        if elastic:
            rows = compare(ours, reference)
            relative += [abs(rows[k]["relative"]) for k in PHYSICS if k in rows]
            energy.append(abs(rows["energy"]["difference"]))
            tables[text] = {k: {"model": v["model"], "reference": v["reference"], "relative": v["relative"]}
                            for k, v in rows.items()}
    out = {"physics": 100.0 * float(np.mean(relative)), "E0": float(np.mean(energy)), "tables": tables}
    differences = [abs(row["difference"]) for rows in phase_energies(records).values() for row in rows.values()
                   if row["difference"] is not None and row["reference"] > 0.0]
    if differences:
        out["phases"] = float(np.mean(differences))
    return out


def run_one(name, spec, variant, seed, args, workdir):
    """Train one variant on one set with one seed; its scores and the physics tables."""
    from mlff.data.readers import LabelKeys, read_frames
    from mlff.evaluation import error_breakdown, error_metrics, predict_frames
    from mlff.train import TrainConfig, train

    label, options, model = parse_variant(variant)
    frames = read(str(DATA / spec["data"]), ":")
    train_frames, valid, test = split_frames(frames, spec["test"], spec["valid"])
    run_dir = workdir / f"{name}-{label.replace(' ', '_').replace('/', '_')}-seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    for part, subset in (("train", train_frames), ("valid", valid), ("test", test)):
        write(run_dir / f"{part}.extxyz", subset)
    config = {"train_file": str(run_dir / "train.extxyz"), "valid_file": str(run_dir / "valid.extxyz"), "test_fraction": 0.0,
              "output_dir": str(run_dir / "run"), "progress": False, "tensorboard": "off", "seed": seed,
              "model": {"preset": args.preset, "dtype": args.dtype, **model}, **options}
    if args.budget:
        config.update(time_limit=args.budget, max_epochs=100000)
    else:
        config.setdefault("max_epochs", args.epochs or spec["epochs"])
    start = time.perf_counter()
    result = train(TrainConfig.from_dict(config))
    wall = time.perf_counter() - start
    test_frames = read_frames(str(run_dir / "test.extxyz"), LabelKeys())
    metrics = error_metrics(test_frames, predict_frames(result.model_path, test_frames))
    everything = read_frames(str(DATA / spec["data"]), LabelKeys())
    tail = error_breakdown(everything, predict_frames(result.model_path, everything), tail=0.1)["tail"]
    record = {"set": name, "variant": label, "seed": seed, "options": options, "model": model, "epochs": result.epochs,
              "wall_s": wall, "E MAE": metrics["energy_mae"], "F MAE": metrics["forces_mae"],
              "tail": tail["energy_mae"], "tail_bias": tail["energy_mean_error"]}
    if spec["crystals"]:
        record.update(physics_scores(result.model_path, spec["crystals"], spec.get("phases", ())))
    return record


def averaged(stored):
    """One record per (set, variant): the scores' means over the seeds run, the seeds' count."""
    groups = {}
    for r in stored:
        groups.setdefault((r["set"], r["variant"]), []).append(r)
    out = {}
    for key, group in groups.items():
        mean = dict(copy.deepcopy(group[0]), seeds=len(group))
        for score in (*SCORES, "tail_bias", "epochs", "wall_s"):
            if score in group[0]:
                mean[score] = float(np.mean([r[score] for r in group]))
        for text, table in group[0].get("tables", {}).items():
            mean["tables"][text] = {k: dict(v, relative=float(np.mean([r["tables"][text][k]["relative"]
                                                                        for r in group])))
                                    for k, v in table.items() if v["relative"] is not None}
        out[key] = mean
    return out


def ranks(records, sets, variants):
    """Each variant's rank (1 = best, ties share the mean) per (set, score) present for all."""
    table = {v: [] for v in variants}
    for name in sets:
        for score in SCORES:
            values = {v: records.get((name, v), {}).get(score) for v in variants}
            if any(x is None for x in values.values()):
                continue
            order = sorted(values.values())
            for v, x in values.items():
                first = order.index(x)
                table[v].append(first + 1 + (order.count(x) - 1) / 2.0)
    return {v: (float(np.mean(r)) if r else float("nan"), len(r)) for v, r in table.items()}


def report(records, sets, variants):
    lines = []
    for name in sets:
        lines.append(f"\n{name}")
        lines.append(f"{'variant':<32}{'seeds':>6}{'epochs':>7}{'E MAE':>8}{'F MAE':>8}{'tail':>8}{'tail bias':>10}"
                     f"{'E0':>8}{'phases':>8}{'physics':>9}  a0 / B / C11 / C12 / C44 (%)")
        for v in variants:
            r = records.get((name, v))
            if r is None:
                continue
            detail = ""
            for table in r.get("tables", {}).values():
                detail = " / ".join(f"{100 * table[k]['relative']:+.0f}" if k in table else "-" for k in PHYSICS)
            lines.append(f"{v[:31]:<32}{r['seeds']:>6}{r['epochs']:>7.0f}{r['E MAE']:>8.1f}{r['F MAE']:>8.1f}{r['tail']:>8.1f}"
                         f"{r['tail_bias']:>+10.1f}{r.get('E0', float('nan')):>8.1f}{r.get('phases', float('nan')):>8.1f}"
                         f"{r.get('physics', float('nan')):>9.1f}  {detail}")
    lines.append("\nmean rank over the suite (1 = best; per set: E MAE, F MAE, tail, physics, E0, phases)")
    for v, (rank, count) in sorted(ranks(records, sets, variants).items(), key=lambda item: item[1][0]):
        lines.append(f"{v[:31]:<32}{rank:>6.2f}  ({count} scores)")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SUITE), help=f"comma-separated, of {list(SUITE)}")
    parser.add_argument("--variant", nargs="*", action="append", default=None)
    parser.add_argument("--epochs", type=int, default=None,
                        help="max_epochs of each run (default: the set's, SUITE; a variant may set its own)")
    parser.add_argument("--budget", default=None, help="a time_limit per run instead of --epochs (e.g. 20m)")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per run (the split stays the same)")
    parser.add_argument("--out", default="defaults_sweep.json", help="results (JSON); existing runs are kept")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--report-only", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args()

    sets = [s for s in args.sets.split(",") if s]
    unknown = [s for s in sets if s not in SUITE]
    if unknown:
        parser.error(f"unknown sets {unknown}; the suite has {list(SUITE)}")
    variants = [v or ["defaults"] for v in (args.variant or [["defaults"]])]
    labels = [parse_variant(v)[0] for v in variants]
    out = Path(args.out)
    stored = json.loads(out.read_text()) if out.exists() else []
    done = {(r["set"], r["variant"], r.get("seed", 0)) for r in stored}
    if args.report_only:
        labels = list(dict.fromkeys(r["variant"] for r in stored))
        print(report(averaged(stored), sets, labels))
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mlff-sweep-"))
    for name in sets:
        if not (DATA / SUITE[name]["data"]).exists():
            print(f"{name}: {SUITE[name]['data']} is missing (run its generator in datasets/); skipped")
            continue
        for seed in range(args.seeds):
            for variant, label in zip(variants, labels):
                if (name, label, seed) in done:
                    continue
                record = run_one(name, SUITE[name], variant, seed, args, workdir)
                stored.append(record)
                done.add((name, label, seed))
                out.write_text(json.dumps(stored, indent=1))
                print(f"{name:<8}{label[:32]:<34}seed {seed}  E {record['E MAE']:.1f}  F {record['F MAE']:.1f}  tail "
                      f"{record['tail']:.1f}  physics {record.get('physics', float('nan')):.1f} %  "
                      f"E0 {record.get('E0', float('nan')):.1f}  ({record['wall_s']:.0f} s)", flush=True)
    print(report(averaged(stored), sets, labels))


if __name__ == "__main__":
    main()
