"""``mlff deploy CHECKPOINT -o model.pt [--compile]``: export a training checkpoint as one model file.

``mlff deploy model.pt -o new.pt`` re-exports an existing model file with this mlff version (the
same weights, the current code: e.g. the fused convolution)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a training checkpoint (best.pt or last.pt in output_dir), "
                        "or a model file to re-export")
    parser.add_argument("-o", "--output", required=True, help="model file to write, e.g. model.pt")
    parser.add_argument("--raw-weights", action="store_true",
                        help="export the raw weights instead of their exponential moving average")
    parser.add_argument("--compile", action="store_true",
                        help="mark the file to run compiled on the CPU in Python/ASE (several times "
                             "faster on molecules and small cells) and compile it for this machine now "
                             "(a few minutes, needs g++); other machines compile it once on first load. "
                             "The file carries no native code; LAMMPS runs the TorchScript model")
    parser.add_argument("--tp-backend", choices=["fused", "e3nn"],
                        help="convolution implementation of the exported file (same weights and "
                             "results; default: the model's own setting)")


def run(args: argparse.Namespace) -> int:
    from ..modelfile import ModelFileError, deploy, model_from_file, read_metadata
    from ..train import load_checkpoint, model_from_checkpoint

    overrides = {"tp_backend": args.tp_backend} if args.tp_backend else {}
    try:
        read_metadata(args.checkpoint)
        is_model_file = True
    except ModelFileError:
        is_model_file = False
    if is_model_file:
        model = model_from_file(args.checkpoint, **overrides)
    else:
        model = model_from_checkpoint(load_checkpoint(args.checkpoint), use_ema=not args.raw_weights,
                                      **overrides)
    from ..modelfile.compiled_copy import CompileError

    try:
        path = deploy(model, args.output, compile=args.compile)
    except CompileError as error:
        print(f"mlff deploy: {error}")
        return 2
    meta = read_metadata(path)
    compiled = ", runs compiled on the CPU (built for this machine)" if meta.compiled else ""
    layers = f"{meta.num_layers} layer{'s' if meta.num_layers != 1 else ''}"
    print(f"wrote {path}: species {meta.species}, r_cut {meta.r_cut} Å, {layers}, {meta.dtype}{compiled}")
    return 0
