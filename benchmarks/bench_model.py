"""Speed and memory of energy + forces (+ stress) for an mlff model.

Prints a table of atom-steps/s, peak resident memory and the model file's load time (its first load
in a process, as each LAMMPS rank and calculator pays it) at several system sizes, for both model
dtypes, through (a) the raw scripted model on a prebuilt neighbour list and (b) the ASE calculator
(neighbour list rebuilt every step, as in MD). Each case runs in its own process so that peak
memory is that case's own.

    python benchmarks/bench_model.py [--preset small] [--sizes 64 1000 8000] [--threads 2]
    python benchmarks/bench_model.py --model num_layers=2 num_features=64 l_max=2 parity=false \
        avg_num_neighbors=42 --sizes 1000 8000 32000 --paths raw        # the matched-size model
    python benchmarks/bench_model.py --model tp_backend=e3nn ...        # the reference convolution
    python benchmarks/bench_model.py --paths raw compiled ase ase-compiled ...  # + the compiled copy
    python benchmarks/bench_model.py --paths ase ase-chunked --chunk-atoms 2048 ...  # bounded memory

Paths: ``raw`` (the TorchScript model on a prebuilt neighbour list), ``compiled`` (the same call
through the AOTInductor copy built here, ``mlff deploy --compile``), ``ase`` / ``ase+stress`` (the
calculator, TorchScript), ``ase-compiled`` (the calculator with ``compiled=True``, with stress).

``--model KEY=VALUE ...`` sets any ModelConfig field on top of the preset (values are parsed as
YAML scalars: ``false``, ``42``, ``5.0``).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _repeats(cells):
    """Replication (a, b, c) of the 4-atom cubic cell with a*b*c closest to ``cells``, near-cubic."""
    best = (1, 1, 1)
    for a in range(1, 40):
        for b in range(a, 40):
            c = max(b, round(cells / (a * b)))
            key = (abs(a * b * c - cells), c - a)
            if key < (abs(best[0] * best[1] * best[2] - cells), best[2] - best[0]):
                best = (a, b, c)
    return best


def _model_overrides(items):
    import yaml

    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--model expects KEY=VALUE (a ModelConfig field), got {item!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _build(args, overrides):
    import mlff

    return mlff.build_model(mlff.ModelConfig.preset(args.preset, **overrides), ["Cu"], seed=0)


def _case(args):
    import torch
    from ase.build import bulk

    import mlff
    from mlff.data import SpeciesMap, from_ase

    torch.set_num_threads(args.threads)
    overrides = {**_model_overrides(args.model), "dtype": args.dtype}
    if args.l_max is not None:
        overrides["l_max"] = args.l_max
    if args.r_cut is not None:
        overrides["r_cut"] = args.r_cut
    compiled = args.path in ("compiled", "ase-compiled")
    # load_s: the file's first load in a process, as each LAMMPS rank and calculator pays it
    if args.model_file:  # the parent's compiled file (compiling takes a minute: once per dtype)
        tick = time.perf_counter()
        deployed = mlff.load(args.model_file, compiled=compiled)
        load_s = time.perf_counter() - tick
    else:
        model = _build(args, overrides)
        with tempfile.TemporaryDirectory() as tmp:
            path = mlff.deploy(model, os.path.join(tmp, "m.pt"))
            tick = time.perf_counter()
            deployed = mlff.load(path, compiled=False)
            load_s = time.perf_counter() - tick
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(_repeats(args.atoms // 4))
    atoms.rattle(0.05, seed=0)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.path in ("raw", "compiled"):
        data = from_ase(atoms, SpeciesMap(deployed.species), deployed.r_cut)
        inputs = (data["positions"], data["edge_index"], data["edge_shift"], data["species"])

        def step():
            if args.jit_optimize:  # the optimising TorchScript executor (mlff.load runs the plain one)
                with torch.jit.optimized_execution(True):
                    deployed.module(*inputs, len(atoms))
            else:
                deployed(*inputs)
    else:
        atoms.calc = mlff.MLFFCalculator(deployed, chunk_atoms=args.chunk_atoms if args.path == "ase-chunked" else 0)

        def step():
            atoms.positions[0, 0] += 1e-6  # force a new neighbour list, as in MD
            atoms.get_forces()
            if args.path in ("ase+stress", "ase-compiled", "ase-chunked"):
                atoms.get_stress()

    step()  # warm-up (TorchScript profiling runs)
    step()
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < args.seconds:
        tick = time.perf_counter()
        step()
        times.append(time.perf_counter() - tick)
    elapsed = sorted(times)[len(times) // 2]  # median: robust to a shared machine's hiccups
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"atoms": len(atoms), "s_per_step": elapsed, "load_s": load_s, "peak_mb": peak / 1024,
                      "extra_mb": (peak - base_rss) / 1024}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--l-max", type=int, help="override the preset's l_max")
    parser.add_argument("--r-cut", type=float, help="override the preset's r_cut (Å)")
    parser.add_argument("--model", nargs="+", metavar="KEY=VALUE",
                        help="ModelConfig fields on top of the preset, e.g. num_features=64 parity=false")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 1000, 8000])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--paths", nargs="+", default=["raw", "ase", "ase+stress"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk-atoms", type=int, default=2048, help="atoms per chunk of the ase-chunked path")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--jit-optimize", action="store_true",
                        help="raw path: run TorchScript's optimising executor instead of the plain one")
    parser.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--atoms", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-file", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        return _case(args)

    print(f"mlff model benchmark: preset={args.preset} (l_max={'preset' if args.l_max is None else args.l_max}, r_cut={args.r_cut or 'preset'}), "
          f"model overrides {_model_overrides(args.model)}, {args.threads} threads, energy+forces+virial per call")
    header = f"{'path':<11}{'dtype':<9}{'atoms':>7}{'ms/step':>11}{'atom-steps/s':>14}{'peak MB':>9}{'+MB':>7}{'load s':>8}"
    print(header)
    print("-" * len(header))
    compiled_files = {}
    if {"compiled", "ase-compiled"} & set(args.paths):
        import mlff

        directory = tempfile.mkdtemp(prefix="mlff_bench_")
        for dtype in args.dtypes:
            overrides = {**_model_overrides(args.model), "dtype": dtype}
            overrides.update({k: v for k, v in (("l_max", args.l_max), ("r_cut", args.r_cut)) if v is not None})
            tick = time.perf_counter()
            compiled_files[dtype] = mlff.deploy(_build(args, overrides), os.path.join(directory, f"{dtype}.pt"),
                                                compile=True)
            print(f"(compiled the {dtype} model in {time.perf_counter() - tick:.0f} s)", flush=True)
    for size in args.sizes:
        for dtype in args.dtypes:
            for path in args.paths:
                cmd = [sys.executable, __file__, "--case", "--atoms", str(size), "--dtype", dtype,
                       "--path", path, "--preset", args.preset, "--threads", str(args.threads),
                       "--seconds", str(args.seconds), "--chunk-atoms", str(args.chunk_atoms)]
                cmd += ["--l-max", str(args.l_max)] if args.l_max is not None else []
                cmd += ["--r-cut", str(args.r_cut)] if args.r_cut is not None else []
                cmd += ["--model", *args.model] if args.model else []
                cmd += ["--jit-optimize"] if args.jit_optimize else []
                cmd += ["--model-file", compiled_files[dtype]] if path in ("compiled", "ase-compiled") else []
                env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
                res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if res.returncode != 0:
                    lines = res.stderr.strip().splitlines()
                    why = lines[-1] if lines else f"killed by signal {-res.returncode} (out of memory?)"
                    print(f"{path:<11}{dtype:<9}{size:>7}  failed: {why}")
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                print(f"{path:<11}{dtype:<9}{r['atoms']:>7}{1e3 * r['s_per_step']:>11.1f}"
                      f"{r['atoms'] / r['s_per_step']:>14.0f}{r['peak_mb']:>9.0f}{r['extra_mb']:>7.0f}{r['load_s']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
