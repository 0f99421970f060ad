"""``mlff evaluate MODEL.pt DATA``: error table (and JSON) plus parity plots."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file written by mlff deploy / mlff train")
    parser.add_argument("data", nargs="+", help="labelled data file(s): extxyz, OUTCAR, vasprun.xml, ...")
    parser.add_argument("--json", metavar="FILE", nargs="?", const="-",
                        help="the metrics as JSON: to FILE, or to standard output (instead of the "
                             "table) when no FILE is given")
    parser.add_argument("--plots", metavar="DIR", default="evaluation",
                        help="folder for the parity plots (default: ./evaluation)")
    parser.add_argument("--no-plots", action="store_true", help="skip the parity plots")
    parser.add_argument("--energy-key", default="energy")
    parser.add_argument("--forces-key", default="forces")
    parser.add_argument("--stress-key", default="stress")
    parser.add_argument("--reader", choices=("ase", "pymatgen"), default="ase")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-atoms", type=int, default=None, metavar="N",
                        help="frames go up to N atoms per model call (default: 1024 on the CPU, 8192 on a GPU)")
    parser.add_argument("--tail", type=float, default=0.1, metavar="FRACTION",
                        help="also report the errors of this fraction of frames lowest in energy (per atom, "
                             "above the composition baseline), with the energy's mean signed error; "
                             "default 0.1")
    parser.add_argument("--committee", nargs="+", metavar="MODEL", default=[],
                        help="more model files: evaluate the committee (mean prediction) and report "
                             "its spread against its error (active learning)")


def seen_in_training(model_path: str, frames) -> dict | None:
    """How many of ``frames`` the run that wrote ``model_path`` trained and validated on (from its
    folder's split_fingerprints.json), or None when the run's split is unknown."""
    from ..data.fingerprint import overlap, read_split

    splits = read_split(model_path)
    if splits is None:
        return None
    return overlap((f.atoms for f in frames), {k: v for k, v in splits.items() if k in ("train", "valid")})


def seen_line(seen: dict, total: int) -> str:
    train, valid = seen.get("train", 0), seen.get("valid", 0)
    if train + valid == 0:
        return f"held out: none of the {total} frames was a training or validation frame of the run"
    return (f"warning: {train} of the {total} frames were training frames and {valid} validation frames of the run "
            "that wrote this model: errors on them are not a test (score its test.extxyz, or data it never saw)")


def run(args: argparse.Namespace) -> int:
    from ..data.readers import LabelKeys, read_frames
    from ..files import dumps_json, write_json
    from ..evaluation import (breakdown_table, committee_summary, error_breakdown, error_metrics, metrics_table,
                              parity_plots, predict_frames)

    frames = read_frames(args.data, LabelKeys(args.energy_key, args.forces_key, args.stress_key), args.reader)
    seen = seen_in_training(args.model, frames)
    models = [args.model, *args.committee]
    predictions = predict_frames(models if args.committee else args.model, frames, args.device, args.batch_atoms)
    metrics = error_metrics(frames, predictions)
    breakdown = error_breakdown(frames, predictions, args.tail)
    document = {"model": args.model, "frames": len(frames), **metrics,
                **{key: value for key, value in breakdown.items() if key != "all"}}
    if seen is not None:
        document["seen_in_run"] = seen
    if "energy_mean_error" in breakdown["all"]:
        document["energy_mean_error"] = breakdown["all"]["energy_mean_error"]
    committee = None
    if args.committee:
        committee = committee_summary(frames, predictions)
        document.update(committee=models, committee_spread=committee)
    to_stdout = args.json == "-"
    if to_stdout:
        print(dumps_json(document))
    else:
        print(metrics_table(metrics, len(frames)))
        print(breakdown_table(breakdown))
        if seen is not None:
            print(seen_line(seen, len(frames)))
        if committee is not None:
            correlation = committee.get("spread_error_rank_correlation")
            print(f"committee of {len(models)}: largest force spread per frame {committee['max_forces_std_mean']:.1f} "
                  f"meV/Å on average, {committee['max_forces_std_max']:.1f} at most"
                  + (f"; rank correlation with the largest force error {correlation:.2f}" if correlation is not None
                     else ""))
    if args.json and not to_stdout:
        write_json(args.json, document)
    if not args.no_plots:
        data_name = ", ".join(os.path.basename(path) for path in args.data)
        model_name = os.path.basename(args.model) if not args.committee else f"committee of {len(models)}"
        for path in parity_plots(frames, predictions, args.plots, data_name, model_name):
            if not to_stdout:  # keep standard output valid JSON
                print(f"plot: {path}")
    return 0
