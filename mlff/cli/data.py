"""``mlff data convert INPUT... -o OUTPUT.db``: labelled files into one checked ASE database."""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    convert = sub.add_parser("convert", help="read, check and write labelled files into one dataset (.db)",
                             description="Read extxyz / OUTCAR / vasprun.xml / anything ASE reads, check every "
                                         "frame, and write them into one ASE database (train_file: OUTPUT.db "
                                         "trains from it; `ase db OUTPUT.db` lists it).")
    convert.add_argument("inputs", nargs="+", help="labelled data files")
    convert.add_argument("-o", "--output", required=True, help="the dataset to write (ends in .db)")
    convert.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                         help="processes reading input files side by side (default: up to 4)")
    convert.add_argument("--energy-key", default="energy")
    convert.add_argument("--forces-key", default="forces")
    convert.add_argument("--stress-key", default="stress")
    convert.add_argument("--weight-key", default="config_weight",
                         help="info key of a frame's loss weight (kept in the database as `weight`)")
    convert.add_argument("--reader", choices=("ase", "pymatgen"), default="ase")
    convert.add_argument("--no-forces", action="store_true", help="accept frames without forces")
    convert.add_argument("--min-distance", type=float, default=0.5,
                         help="Å: closer atoms are an error naming the frame (default 0.5; 0 disables the check)")
    convert.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.readers import LabelKeys, summary_line
    from ..data.store import convert

    bar = tqdm(total=len(args.inputs), unit="file", desc="mlff data convert",
               disable=args.no_progress or not sys.stderr.isatty())

    def progress(done: int, total: int, frames: int) -> None:
        bar.update(done - bar.n)
        bar.set_postfix(frames=frames)

    try:
        summary = convert(args.inputs, args.output, LabelKeys(args.energy_key, args.forces_key, args.stress_key,
                                                                    weight_key=args.weight_key),
                          args.reader, workers=args.workers, need_forces=not args.no_forces,
                          min_distance=args.min_distance, overwrite=args.overwrite, progress=progress)
    finally:
        bar.close()
    print(f"{args.output}: {summary['frames']} frames, {summary['atoms']} atoms "
          f"({summary['atoms_per_frame'][0]}-{summary['atoms_per_frame'][1]} per frame), "
          f"{summary['frames_with_stress']} with stress; {summary_line(summary)}")
    return 0
