"""``mlff``: entry point dispatching to one module per command."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

# command name -> module implementing add_arguments(parser) and run(args) -> int
COMMANDS = {
    "train": ("mlff.cli.train", "fit a potential to labelled data (YAML config); re-run to resume"),
    "data": ("mlff.cli.data", "convert labelled files into one checked dataset (an ASE database)"),
    "evaluate": ("mlff.cli.evaluate", "errors of a model file on labelled data: table, JSON, parity plots"),
    "physics": ("mlff.cli.physics", "a model's crystals beside a reference: equation of state, elastic "
                "constants, phonons, phase energies, stacking faults, vacancies, surfaces"),
    "deploy": ("mlff.cli.deploy", "export a training checkpoint as one TorchScript model file"),
    "lammps": ("mlff.cli.lammps", "build the LAMMPS pair-style plugin or check the installation"),
}


def make_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="mlff",
        description="mlff: E(3)-equivariant machine-learned interatomic potentials "
        "(fit, deploy as one TorchScript file, run in ASE and LAMMPS).",
    )
    parser.add_argument("--version", action="version", version=f"mlff {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(command)
    return parser


def _terminate(signum, frame):
    """SIGTERM as an exception, so that files being written are cleaned up (``finally`` blocks run;
    training installs its own handler, which checkpoints first)."""
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print(f"mlff {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, KeyError, MemoryError) as error:
        if args.debug:
            raise
        message = str(error).strip() or type(error).__name__
        print(f"mlff {args.command}: error: {message}", file=sys.stderr)  # --debug: the traceback
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
