"""``mlff train CONFIG.yaml``: fit a potential; re-running the same command resumes."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML file of training options (see docs/training.md)")
    parser.add_argument("--output-dir", help="override output_dir of the config")
    parser.add_argument("--max-epochs", type=int, help="override max_epochs of the config")
    parser.add_argument("--seed", type=int, help="override seed of the config (a committee: one run per seed)")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..train import load_config, train
    from ..train.budget import TrainingInterrupted

    config = load_config(args.config)
    if args.output_dir:
        config.output_dir = args.output_dir
    if args.max_epochs:
        config.max_epochs = args.max_epochs
    if args.seed is not None:
        config.seed = args.seed
    try:
        result = train(config)
    except TrainingInterrupted as stop:  # checkpoint written; the message says how to resume
        print(f"mlff train: {stop}", file=sys.stderr)
        return stop.exit_code
    print(f"model: {result.model_path}" + (" (time_limit reached)" if result.stopped_by == "time_limit" else ""))
    return 0


def main(argv=None) -> int:
    """``python -m mlff.cli.train`` (the form ``torchrun`` needs)."""
    parser = argparse.ArgumentParser(prog="mlff train", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
