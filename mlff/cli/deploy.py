"""``mlff deploy CHECKPOINT -o model.pt``: export a training checkpoint as one model file."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a training checkpoint (best.pt or last.pt in output_dir)")
    parser.add_argument("-o", "--output", required=True, help="model file to write, e.g. model.pt")
    parser.add_argument("--raw-weights", action="store_true",
                        help="export the raw weights instead of their exponential moving average")


def run(args: argparse.Namespace) -> int:
    from ..deploy import deploy, read_metadata
    from ..train import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(args.checkpoint), use_ema=not args.raw_weights)
    path = deploy(model, args.output)
    meta = read_metadata(path)
    print(f"wrote {path}: species {meta.species}, r_cut {meta.r_cut} Å, {meta.num_layers} layers, {meta.dtype}")
    return 0
