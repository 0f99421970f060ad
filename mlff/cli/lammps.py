"""``mlff lammps build|compile|doctor|path``."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build",
        help="compile pair_style mlff against the installed torch and LAMMPS (cached)",
        description="Compile the plugin into a cache folder keyed by the torch, LAMMPS and plugin "
        "versions; `lmp` and `import lammps` then load it automatically. Does nothing when an "
        "up-to-date build exists.",
    )
    build.add_argument("--force", action="store_true", help="rebuild even if an up-to-date build exists")
    build.add_argument("--jobs", "-j", type=int, default=2, help="parallel compile jobs (default 2)")
    build.add_argument("--verbose", action="store_true", help="show the compiler output")
    sub.add_parser(
        "doctor",
        help="print torch/LAMMPS/MPI/compiler versions and check that LAMMPS loads the plugin",
        description="Check the LAMMPS integration; every failure comes with its fix.",
    )
    compile_ = sub.add_parser(
        "compile",
        help="build a model's compiled layers for this machine (pair_style mlff then runs them)",
        description="AOT-compile the model file's interaction layers (each layer's forward and backward) "
        "for this machine's CPU or GPU into the per-user cache (~/.cache/mlff), where pair_style mlff "
        "finds them ('compiled auto', the default, or 'compiled yes'). Minutes, once per model, machine "
        "type and torch version; needs g++. The model file itself never carries native code.",
    )
    compile_.add_argument("model", help="the model file (.pt) named in pair_coeff")
    compile_.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                          help="the device pair_style mlff runs on (default cpu)")
    compile_.add_argument("--force", action="store_true", help="build again even if this machine has them")
    compile_.add_argument("--jobs", "-j", type=int, default=None,
                          help="packages compiled side by side, each in a process of its own (default: one per "
                               "CPU core this process may use; 1: one after the other)")
    sub.add_parser("path", help="print the folder of the built plugin (for `plugin load`)")


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        from ..lammps.build import PluginBuildError, build

        try:
            path = build(force=args.force, jobs=args.jobs, verbose=args.verbose)
        except PluginBuildError as error:
            print(f"mlff lammps build failed: {error}", file=sys.stderr)
            return 1
        print(f"pair_style mlff plugin: {path}")
        return 0
    if args.action == "compile":
        from ..aoti import CompileError
        from ..modelfile import ModelFileError
        from ..modelfile.compiled_layers import compile_layers

        try:
            folder = compile_layers(args.model, args.device, force=args.force, jobs=args.jobs)
        except (CompileError, ModelFileError, OSError) as error:
            print(f"mlff lammps compile failed: {error}", file=sys.stderr)
            return 1
        print(f"compiled layers of {args.model} for {args.device}: {folder}")
        return 0
    if args.action == "doctor":
        from ..lammps.doctor import report

        return 1 if report() else 0
    from ..lammps import plugin_path

    print(plugin_path())
    return 0
