"""The one-shot device check: correctness and speed of mlff on a GPU, in one short run.

Run through ``bash benchmarks/gpu_check.sh`` (GPU machine: installs the carried wheels first) or
``bash benchmarks/gpu_check.sh --cpu`` (the same steps on the CPU with small sizes, so that any
machine can check the script itself). Steps, each timed and recorded even when it fails:

1. versions (torch, CUDA, GPU, e3nn, ase, LAMMPS, mlff);
2. ``mlff lammps build`` against this torch;
3. the GPU tests, ``pytest -m "cuda and not compiles" tests/gpu`` (accelerator vs CPU: outputs, symmetry, halo
   protocol, model files between devices, training, LAMMPS on 1 and 2 ranks);
4. LAMMPS NVE energy drift with ``pair_style mlff device ...``;
5. profile: where one ``MLFFCalculator`` call's time goes (graph on the CPU, copies, the model
   on the device) and the model's most expensive operators (``profile.txt``);
6. lammps_phases: where a LAMMPS step's time goes (``MLFF_TIMING=1``: neighbour graph, copies,
   model, feature exchange, scatter-back; LAMMPS's own neighbour lists and comm); then, at the
   largest size, the cost of re-neighbouring (lists rebuilt every step) with ``graph device``
   (LAMMPS's list on the host, its candidates uploaded) against ``graph cells`` (a cell list on
   the device, no LAMMPS list);
7. speed: atom-steps/s and peak GPU memory through ``MLFFCalculator`` for the shipped potential
   and the matched-size model (2 layers, 64 channels, l_max 2) in float32 and float64, from 1k
   atoms up (1k, 8k, 64k, then doubling to 512k on a GPU, to find the largest system that fits)
   until memory or time runs out; the same through LAMMPS on 1 rank, and on 2 ranks sharing the
   device at the largest LAMMPS size (float32 models);
8. compiled_layers: ``mlff lammps compile`` of the shipped potential for this device (its time
   and the speed-up it measured), then a LAMMPS step with ``compiled no`` against ``compiled yes``
   (``MLFF_TIMING=1``: the model phase) at the lammps_phases sizes;
9. compiled_copy: the GPU tests that compile (``-m compiles``: the copy's results on the device),
   then the shipped potential's compiled copy for this device (``mlff.load(path, device,
   compiled=True)``: AOTInductor, its build time) and ``MLFFCalculator`` with TorchScript against
   the copy (ms per call, peak memory) at the lammps_phases sizes;
10. peers: the same timings for MACE, NequIP and SevenNet at the matched size through their own ASE
   calculators (``peers.py``; NequIP compiled with AOTInductor here, for this device), when their
   wheels were prepared (``python benchmarks/gpu/peers.py prepare``) or ``--peer-python`` names
   their environments;
11. largest: the largest system per device, the goal sizes of the matched model (1 million atoms)
    and the shipped potential (4 million), float32, through ``MLFFCalculator`` in chunks of atoms
    (halved until it fits): seconds per call and peak memory;
12. train: training frames/s.

Writes ``gpu_check.json`` (everything) and ``gpu_check.md`` (the summary tables) to ``--out``
after every step, so a run cut short still reports what it measured. ``--time-limit S`` ends the
run within S seconds instead of being cut short: the speed and peer budgets shrink to what is
left, and a step with under ``MIN_STEP_S`` left is not started (recorded as "not run"; rerun it
with ``--skip`` naming the steps that ran).
"""

import argparse
import contextlib
import csv
import functools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import fcc_cu, host_threads, is_out_of_memory, time_calculator  # noqa: E402

SHIPPED = ROOT / "examples" / "potentials" / "cu" / "model.pt"
MATCHED = dict(num_layers=2, num_features=64, l_max=2, parity=False, r_cut=5.0, num_basis=8, cutoff_p=6,
               radial_hidden=64, radial_layers=2, avg_num_neighbors=42.0)
CHUNK_ATOMS = 16384  # the chunked rows of the speed step (MLFFCalculator(chunk_atoms=...))
# per mode: structure sizes (atoms) to try, LAMMPS sizes, NVE steps, seconds for each model and dtype
# through the calculator (no larger size is started after it), seconds for all LAMMPS timings, seconds
# of calls each calculator timing averages (the CPU mode checks the steps work, it measures little)
PLAN = {
    "cuda": dict(sizes=[1000, 8000, 64000, 128000, 256000, 512000], lammps_sizes=[1000, 8000, 64000], nve_steps=1000,
                 speed_budget=25.0, lammps_budget=60.0, max_call=10.0, measure_s=3.0, train_frames=64, train_epochs=3,
                 profile_sizes=[8000, 64000], phase_sizes=[8000, 64000], peer_budget=40.0, peer_timeout=200.0,
                 peer_dtypes={"mace": ["float32", "float64"], "nequip": ["float32"], "sevenn": ["float32"]},
                 largest={"matched 2x64 l2": 1_024_000, "shipped Cu": 4_096_000}, largest_chunk=CHUNK_ATOMS),
    "cpu": dict(sizes=[32, 108], lammps_sizes=[108], nve_steps=50, speed_budget=30.0, lammps_budget=60.0,
                max_call=5.0, measure_s=0.3, train_frames=8, train_epochs=2, profile_sizes=[108],
                phase_sizes=[108], peer_budget=20.0, peer_timeout=900.0,
                peer_dtypes={"mace": ["float32", "float64"], "nequip": ["float32"], "sevenn": ["float32"]},
                largest={"matched 2x64 l2": 500, "shipped Cu": 2000}, largest_chunk=128),
}


MIN_STEP_S = 20.0  # a step is not started with less time than this left under --time-limit


class Report:
    """Results by step; written as JSON and markdown after every step. ``time_limit``: seconds the
    whole run may take (None: no limit)."""

    def __init__(self, out: Path, device: str, time_limit: float = None):
        self.out = out
        self.data = {"device": device, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
        self.deadline = float("inf") if time_limit is None else time.perf_counter() + time_limit
        if time_limit is not None:
            self.data["time_limit_s"] = time_limit
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        """Seconds left under the time limit (inf without one)."""
        return self.deadline - time.perf_counter()

    def due(self, name: str) -> bool:
        """Whether step ``name`` starts: not with under MIN_STEP_S left (then recorded as not run)."""
        if self.left() >= MIN_STEP_S:
            return True
        self.data["steps"][name] = {"status": "not run", "result": "the time limit was reached before it"}
        print(f"== {name}: not run (time limit)", flush=True)
        self.write()
        return False

    @contextlib.contextmanager
    def step(self, name: str):
        record = {"status": "running"}
        self.data["steps"][name] = record
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            yield record
            record["status"] = "ok" if record.get("status") == "running" else record["status"]
        except Exception as error:  # a failed step is recorded; the next one still runs
            record["status"] = "failed"
            record["error"] = f"{type(error).__name__}: {error}"[-2000:]
            traceback.print_exc()
        record["seconds"] = round(time.perf_counter() - start, 1)
        print(f"   {name}: {record['status']} ({record['seconds']} s)", flush=True)
        self.write()

    def write(self) -> None:
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=1, default=str))
        (self.out / "gpu_check.md").write_text(summary(self.data))


def _chunked(row: dict) -> str:
    """A LAMMPS row timed after chunk auto fell back to chunks says so (not a whole-layer time)."""
    return f" (in chunks of {row['chunk']}: whole layers did not fit)" if row.get("chunk") else ""


def _variant(row: dict) -> str:
    """A LAMMPS row timed with other options than the defaults names them."""
    return f" ({row['variant']})" if row.get("variant") else ""


def summary(data: dict) -> str:
    steps = data["steps"]
    lines = [f"# mlff device check ({data['device']}, {data['started']})", ""]
    versions = steps.get("versions", {}).get("versions", {})
    if versions:
        lines += ["| " + " | ".join(versions) + " |", "|" + "---|" * len(versions),
                  "| " + " | ".join(str(v) for v in versions.values()) + " |", ""]
    lines += ["| step | status | seconds | result |", "|---|---|---|---|"]
    for name, record in steps.items():
        result = record.get("result", record.get("error", ""))
        lines.append(f"| {name} | {record['status']} | {record.get('seconds', '')} | {str(result)[:300]} |")
    rows = (steps.get("speed", {}).get("rows", []) + steps.get("peers", {}).get("rows", [])
            + steps.get("largest", {}).get("rows", []))
    if rows:
        lines += ["", "| engine | model | dtype | atoms | ms/step | atom-steps/s | peak GPU memory (MB) |",
                  "|---|---|---|---|---|---|---|"]
        for row in rows:
            lines.append(f"| {row['engine']}{_chunked(row)} | {row['model']} | {row['dtype']} | {row.get('atoms', '')} | "
                         f"{row.get('ms', '')} | {row.get('atom_steps_per_s', '')} | "
                         f"{row.get('peak_mb', row.get('note', ''))} |")
    copy_rows = steps.get("compiled_copy", {}).get("rows", [])
    if copy_rows:
        lines += ["", "| compiled copy (MLFFCalculator), ms/call | atoms | TorchScript | compiled | "
                  "TorchScript peak MB | compiled peak MB |", "|---|---|---|---|---|---|"]
        lines += [f"| shipped Cu float32 | {r['atoms']} | {r.get('ms_torchscript', r.get('note_torchscript', ''))} | "
                  f"{r.get('ms_compiled', r.get('note_compiled', ''))} | {r.get('peak_mb_torchscript', '')} | "
                  f"{r.get('peak_mb_compiled', '')} |" for r in copy_rows]
    phases = steps.get("profile", {}).get("rows", [])
    if phases:
        lines += ["", "| calculator call, ms | atoms | edges | graph | to device | model | to host | "
                  "model peak MB |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} {r['dtype']} | {r['atoms']} | {r['edges']} | {r['graph_ms']} | {r['h2d_ms']} | "
                  f"{r['model_ms']} | {r['d2h_ms']} | {r.get('peak_mb', '')} |" for r in phases]
    phase_rows = steps.get("lammps_phases", {}).get("rows", [])
    if phase_rows:
        names = ["graph", "upload", "model", "exchange", "download", "scatter"]
        lines += ["", "| LAMMPS step, ms (1 rank) | atoms | step | " + " | ".join(names) + " | LAMMPS neigh | LAMMPS comm |",
                  "|---|---|---|" + "---|" * (len(names) + 2)]
        lines += [f"| {r['model']} {r['dtype']}{_variant(r)}{_chunked(r)} | {r['atoms']} | {r.get('ms', '')} | "
                  + " | ".join(str(r["phases"].get(n, "")) for n in names + ["neigh_ms", "comm_ms"]) + " |"
                  for r in phase_rows]
    train_rows = steps.get("train", {}).get("rows", [])
    if train_rows:
        lines += ["", "| training | dtype | frames/s | atoms/s |", "|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['dtype']} | {r['frames_per_s']} | {r['atoms_per_s']} |" for r in train_rows]
    return "\n".join(lines) + "\n"


def versions(device: str) -> dict:
    import torch

    import mlff

    found = {"python": platform.python_version(), "torch": torch.__version__, "cuda": str(torch.version.cuda),
             "mlff": mlff.__version__}
    for name in ("e3nn", "ase", "vesin", "lammps", "mpich", "numpy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    if device == "cuda":
        found["gpu"] = torch.cuda.get_device_name(0)
        found["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return found


def model_files(folder: Path) -> dict:
    """name -> {dtype: path}: the shipped potential and the matched-size model, both dtypes."""
    import mlff
    from mlff.modelfile import model_from_file

    files = {"shipped Cu": {}, "matched 2x64 l2": {}}
    for dtype in ("float32", "float64"):
        files["shipped Cu"][dtype] = mlff.deploy(model_from_file(SHIPPED, dtype=dtype), folder / f"shipped_{dtype}.pt")
        model = mlff.build_model(mlff.ModelConfig(dtype=dtype, **MATCHED), ["Cu"], seed=0)
        files["matched 2x64 l2"][dtype] = mlff.deploy(model, folder / f"matched_{dtype}.pt")
    return files


PEER_WHEELS = ROOT / ".whl" / "peers"
PEERS = ("mace", "nequip", "sevenn")


def peers_available(overrides: dict) -> list:
    """The peers this check can time: those with wheels from ``benchmarks/gpu/peers.py prepare``, or a
    python of their own given with --peer-python."""
    return [tool for tool in PEERS if tool in overrides or any((PEER_WHEELS / tool).glob("*.whl"))]


def peer_rows(tool: str, device: str, plan: dict, python: str = None, timeout: float = None) -> tuple:
    """One peer's speed rows, timed in a process of its own (its packages, e.g. MACE's e3nn 0.4.4, on
    PYTHONPATH ahead of mlff's), and its set-up notes (NequIP's compile time). The process is
    stopped after ``timeout`` seconds (default: the plan's), keeping the rows it printed."""
    timeout = plan["peer_timeout"] if timeout is None else timeout
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    if python is None:
        site = Path(tempfile.gettempdir()) / f"mlff-peer-{tool}"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--upgrade", "--target", str(site)] + [str(w) for w in sorted((PEER_WHEELS / tool).glob("*.whl"))],
                       check=True)
        env["PYTHONPATH"] = str(site)
        python = sys.executable
    cmd = [python, str(Path(__file__).resolve().parent / "peers.py"), "time", "--tool", tool, "--device", device,
           "--sizes", *map(str, plan["sizes"]), "--dtypes", *plan["peer_dtypes"][tool],
           "--budget", str(plan["peer_budget"]), "--max-call", str(plan["max_call"]),
           "--measure-s", str(plan["measure_s"]), "--packages", str(PEER_WHEELS / "nequip")]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
        out, err, tail = res.stdout, res.stderr, "" if res.returncode == 0 else f"exit {res.returncode}"
    except subprocess.TimeoutExpired as error:  # the rows printed so far still count
        decode = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
        out, err, tail = decode(error.stdout), decode(error.stderr), f"stopped after {timeout:.0f} s"
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rows = [dict(line, engine=f"{line['engine']} (peer)") for line in lines if "engine" in line]
    notes = [line for line in lines if "engine" not in line]
    if tail:
        notes.append({"status": tail, "stderr": err[-1500:]})
    return rows, notes


def profile_calls(files: dict, device: str, sizes: list, out: Path) -> list:
    """Split one calculator call into its phases, and profile the model's operators once."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    import mlff

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def clock(fn, repeats=3):
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            result = fn()
            sync()
            times.append(time.perf_counter() - start)
        return result, round(1e3 * sorted(times)[len(times) // 2], 2)

    rows, tables = [], []
    for name, dtype in (("shipped Cu", "float32"), ("matched 2x64 l2", "float32"), ("matched 2x64 l2", "float64")):
        calc = mlff.MLFFCalculator(files[name][dtype], device=device)
        model = calc.model
        for size in sizes:
            atoms, _ = fcc_cu(size)
            graph, graph_ms = clock(lambda: calc._build_graph(atoms), repeats=1)
            moved, h2d_ms = clock(lambda: {k: v.to(device) for k, v in graph.items()})
            model(**moved)  # warm-up
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            outputs, model_ms = clock(lambda: model(**moved))
            _, d2h_ms = clock(lambda: {k: v.cpu().numpy() for k, v in outputs.items()})
            row = {"model": name, "dtype": dtype, "atoms": len(atoms), "edges": int(graph["edge_index"].shape[1]),
                   "graph_ms": graph_ms, "h2d_ms": h2d_ms, "model_ms": model_ms, "d2h_ms": d2h_ms}
            if device == "cuda":
                row["peak_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20)
            rows.append(row)
            outputs = None  # freed before the next size
            if size == sizes[-1]:
                activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
                with profile(activities=activities) as prof:
                    model(**moved)
                    sync()
                averages = prof.key_averages()
                key = "self_cpu_time_total"
                if device == "cuda":
                    key = "self_device_time_total" if hasattr(averages[0], "self_device_time_total") else "self_cuda_time_total"
                tables.append(f"## {name} {dtype}, {len(atoms)} atoms, {row['edges']} edges: {model_ms} ms\n"
                              + averages.table(sort_by=key, row_limit=30))
            moved = None
            if device == "cuda":
                torch.cuda.empty_cache()
    (out / "profile.txt").write_text("\n\n".join(tables))
    return rows


LAMMPS_DECK = """units metal
atom_style atomic
lattice fcc 3.61
region box block 0 {a} 0 {b} 0 {c}
create_box 1 box
create_atoms 1 box
mass 1 63.546
{neighbor}pair_style mlff device {device}{pair_options}
pair_coeff * * {model} Cu
velocity all create {temperature} 12345 mom yes rot yes
fix integrate all nve
timestep {timestep}
thermo_style custom step pe ke etotal
thermo {thermo}
run {warmup}
run {steps}
"""


REBUILD_EVERY_STEP = "neighbor 2.0 bin\nneigh_modify every 1 delay 0 check no\n"


def run_lammps(workdir: Path, model, device: str, reps, steps: int, warmup: int = 3, thermo: int = 0,
               temperature: float = 300.0, timestep: float = 0.002, ranks: int = 1, extra_env=None,
               pair_options: str = "", rebuild_every_step: bool = False) -> str:
    from mlff.lammps.mpi import lammps_env

    deck = workdir / "in.check"
    deck.write_text(LAMMPS_DECK.format(a=reps[0], b=reps[1], c=reps[2], device=device, model=model,
                                       steps=steps, warmup=warmup, thermo=thermo or steps,
                                       temperature=temperature, timestep=timestep, pair_options=pair_options,
                                       neighbor=REBUILD_EVERY_STEP if rebuild_every_step else ""))
    bindir = Path(sys.executable).parent
    cmd = [str(bindir / "lmp"), "-in", str(deck), "-log", "none"]
    if ranks > 1:
        cmd = [str(bindir / "mpiexec"), "-np", str(ranks)] + cmd
    env = dict(lammps_env(), **(extra_env or {}))
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env, timeout=300)
    if res.returncode != 0:
        errors = [line for line in (res.stdout + res.stderr).splitlines() if "ERROR" in line]
        raise RuntimeError("\n".join([(res.stdout[-1500:] + res.stderr[-1500:]).strip()] + errors[-1:]))
    return res.stdout


def lammps_phases(log: str, steps: int) -> dict:
    """The plugin's MLFF_TIMING line (ms per step, mean over ranks) and LAMMPS's Neigh and Comm
    rows (ms per step) of the last run in a log."""
    phases = {}
    line = [row for row in log.splitlines() if row.startswith("mlff timing")][-1]
    for name, mean in re.findall(r" (\w+) ([\d.]+)/[\d.]+", line.split(":", 1)[1]):
        phases[name] = float(mean)
    for name, key in (("Neigh", "neigh_ms"), ("Comm", "comm_ms")):
        rows = [row for row in log.splitlines() if row.startswith(name + " ") and "|" in row]
        if rows:
            phases[key] = round(1e3 * float(rows[-1].split("|")[2]) / steps, 2)  # the avg column
    return phases


def lammps_chunk(log: str) -> int | None:
    """The chunk of atoms ``pair_style mlff`` (chunk auto) fell back to in a log, the last one said;
    None where whole layers fitted. Rows timed in chunks carry it, for they are not whole-layer times."""
    chunks = re.findall(r"in chunks of (\d+) atoms from now on \(chunk auto;", log)
    return int(chunks[-1]) if chunks else None


def lammps_ms_per_step(log: str) -> float:
    seconds, steps = re.findall(r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps", log)[-1]
    return 1e3 * float(seconds) / int(steps)


def compiled_layer_rows(workdir: Path, model, device: str, sizes, report) -> dict:
    """`mlff lammps compile` for this device (its time and the speed-up it measured), then LAMMPS on
    one rank with `compiled no` and `compiled yes` at each size: ms per step and the model phase."""
    from mlff.modelfile.compiled_layers import compile_layers, read_manifest

    start = time.perf_counter()
    folder = compile_layers(str(model), device)
    out = {"compile_s": round(time.perf_counter() - start, 1),
           "speedup_at_compile": float(read_manifest(folder)["speedup"]), "rows": []}
    for size in sizes:
        _, reps = fcc_cu(size)
        row = {"atoms": 4 * reps[0] * reps[1] * reps[2]}
        out["rows"].append(row)
        for mode, name in (("no", "torchscript"), ("yes", "compiled")):
            log = run_lammps(workdir, model, device, reps, steps=10, extra_env={"MLFF_TIMING": "1"},
                             pair_options=f" compiled {mode}")
            row[f"ms_{name}"] = round(lammps_ms_per_step(log), 2)
            row[f"model_ms_{name}"] = lammps_phases(log, 10).get("model")
        report.write()
    return out


def compiled_layers_step(record: dict, workdir: Path, model, name: str, device: str, sizes, report) -> None:
    """The compiled_layers step: :func:`compiled_layer_rows` of ``model`` into ``record``, with its
    one-line result."""
    record.update(compiled_layer_rows(workdir, model, device, sizes, report))
    record["result"] = (f"{name}: built in {record['compile_s']} s ({record['speedup_at_compile']}x TorchScript "
                        "when timed there); LAMMPS ms/step TorchScript -> compiled: " + "; ".join(
                            f"{r['atoms']} atoms {r['ms_torchscript']} -> {r['ms_compiled']} (model "
                            f"{r['model_ms_torchscript']} -> {r['model_ms_compiled']})" for r in record["rows"]))


def gpu_tests(device: str, marks: str, log: Path, timeout: float = 300) -> tuple:
    """``pytest -m MARKS tests/gpu`` on ``device`` (its log to ``log``): (pytest's last line, passed)."""
    env = dict(os.environ, MLFF_TEST_DEVICE=device, OMP_NUM_THREADS="2" if device == "cuda" else "1")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-m", marks, "-p", "no:cacheprovider",
                          str(ROOT / "tests" / "gpu")], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=timeout)
    log.write_text(res.stdout[-200000:] + res.stderr[-50000:])
    return (res.stdout.strip().splitlines() or ["no output"])[-1], res.returncode == 0


def compiled_copy_step(record: dict, model, name: str, device: str, sizes, plan: dict, deadline: float,
                       report) -> None:
    """The compiled_copy step: the GPU tests that compile (``-m compiles``: the copy's results on
    this device; their log ``pytest_compiles.log``), then the compiled copy of ``model`` for this
    device (built now, or found in this machine's cache: ``compile_s``) and ``MLFFCalculator``
    running TorchScript against the copy at each of ``sizes`` (until ``deadline`` or memory runs
    out), into ``record``."""
    import mlff
    import torch

    record["tests"], passed = gpu_tests(device, "cuda and compiles", report.out / "pytest_compiles.log")
    if not passed:
        record["status"] = "failed"  # the timings still run: they say what the copy costs
    start = time.perf_counter()
    compiled = mlff.load(str(model), device, compiled=True)
    record["compile_s"] = round(time.perf_counter() - start, 1)
    plain = mlff.load(str(model), device, compiled=False)
    rows = record["rows"] = []
    for size in sizes:
        if time.perf_counter() > deadline:
            break
        atoms, _ = fcc_cu(size)
        row = {"atoms": len(atoms)}
        rows.append(row)
        for label, deployed in (("torchscript", plain), ("compiled", compiled)):
            try:
                timed = time_calculator(mlff.MLFFCalculator(deployed), device, atoms, plan["max_call"],
                                        plan["measure_s"])
            except (RuntimeError, MemoryError) as error:
                timed = {"note": "out of memory" if is_out_of_memory(error) else str(error).splitlines()[0][:200]}
                if device == "cuda":
                    torch.cuda.empty_cache()
            if label == "compiled" and compiled.compiled is None:  # it failed and gave way to TorchScript
                timed = {"note": "the compiled copy failed at this size (the calculator ran TorchScript)"}
            row.update({f"{key}_{label}": value for key, value in timed.items()})
        report.write()
        if any(key.startswith("note") for key in row):
            break
    record["result"] = (f"tests: {record['tests']}; {name}: built in {record['compile_s']} s; MLFFCalculator ms/call "
                        "TorchScript -> compiled: "
                        + "; ".join(f"{r['atoms']} atoms {r.get('ms_torchscript', r.get('note_torchscript'))} -> "
                                    f"{r.get('ms_compiled', r.get('note_compiled'))}" for r in rows))


def nve_drift(workdir: Path, device: str, steps: int) -> dict:
    """Energy drift of the shipped potential (float64) in LAMMPS NVE, 1 fs, 600 K."""
    import mlff
    import numpy as np
    from mlff.modelfile import model_from_file

    model = mlff.deploy(model_from_file(SHIPPED, dtype="float64"), workdir / "nve.pt")
    log = run_lammps(workdir, model, device, (4, 4, 4), steps, warmup=0, thermo=max(1, steps // 50),
                     temperature=600.0, timestep=0.001)
    rows = [line.split() for line in log.splitlines()]
    table = np.array([[float(x) for x in row] for row in rows if len(row) == 4 and row[0].isdigit()])
    step, etotal = table[:, 0], table[:, 3]
    slope = np.polyfit(step * 0.001, etotal, 1)[0] / 256  # eV/atom/ps
    return {"atoms": 256, "steps": int(step[-1]), "drift_ev_per_atom_ps": float(slope),
            "peak_to_peak_ev_per_atom": float((etotal.max() - etotal.min()) / 256),
            "ms_per_step": round(lammps_ms_per_step(log), 2)}


def largest_system(path, device: str, target: int, chunk: int, deadline: float) -> dict:
    """One energy + forces evaluation of about ``target`` atoms of fcc Cu through ``MLFFCalculator``
    in chunks of ``chunk`` atoms, after a first call (warm-up), with the device's peak memory; out of
    memory, half the atoms, down to an eighth of ``target`` or until ``deadline`` (perf_counter)."""
    import torch

    import mlff

    tried = []
    size = target
    while True:
        atoms, _ = fcc_cu(size)
        row = {"engine": f"MLFFCalculator chunk {chunk} (largest)", "atoms": len(atoms)}  # chunked by choice
        try:
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            atoms.calc = mlff.MLFFCalculator(path, device=device, chunk_atoms=chunk)
            start = time.perf_counter()
            atoms.get_forces()
            row["first_call_s"] = round(time.perf_counter() - start, 2)
            atoms.positions[0, 0] += 1e-6
            start = time.perf_counter()
            atoms.get_forces()
            seconds = time.perf_counter() - start
            row.update(ms=round(1e3 * seconds, 1), atom_steps_per_s=round(len(atoms) / seconds))
            if device == "cuda":
                row["peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
                row["mb_per_atom"] = round(row["peak_mb"] / len(atoms), 4)
            row["tried"] = tried
            return row
        except (RuntimeError, MemoryError) as error:  # TorchScript wraps CUDA OOM
            if not is_out_of_memory(error):
                raise
            tried.append(f"{len(atoms)} atoms: out of memory")
        finally:
            atoms.calc = None
            if device == "cuda":
                torch.cuda.empty_cache()
        size //= 2
        if size < target // 8 or time.perf_counter() > deadline:
            return dict(row, note="out of memory", tried=tried)


def train_speed(workdir: Path, device: str, num_frames: int, epochs: int) -> list:
    """Training frames/s (energy + force + stress loss) on Cu EMT frames of 32 atoms, batch 4."""
    from ase.io import read, write

    from mlff.train import TrainConfig, train

    frames = [f for f in read(ROOT / "datasets" / "cu_emt.extxyz", ":") if len(f) == 32][:num_frames]
    write(workdir / "train.extxyz", frames)
    write(workdir / "valid.extxyz", frames[:2])
    rows = []
    for name, model in (("small preset", {"preset": "small"}), ("matched 2x64 l2", dict(MATCHED))):
        for dtype in ("float32", "float64"):
            out = workdir / f"train_{len(rows)}"
            config = TrainConfig.from_dict({
                "train_file": str(workdir / "train.extxyz"), "valid_file": str(workdir / "valid.extxyz"),
                "model": {**model, "dtype": dtype}, "max_epochs": epochs, "batch_size": 4, "seed": 0,
                "device": device, "output_dir": str(out), "progress": False, "tensorboard": "off"})
            train(config)
            with open(out / "metrics.csv") as handle:
                seconds = [float(r["seconds"]) for r in csv.DictReader(handle)]
            per_epoch = min(seconds[1:]) if len(seconds) > 1 else seconds[0]  # epoch 1 includes warm-up
            rows.append({"model": name, "dtype": dtype, "frames_per_s": round(len(frames) / per_epoch, 1),
                         "atoms_per_s": round(32 * len(frames) / per_epoch)})
    return rows


STEPS = ("build", "tests", "nve", "profile", "lammps_phases", "speed", "compiled", "copy", "peers", "largest", "train")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"))
    parser.add_argument("--skip", nargs="*", default=[], choices=STEPS, metavar="STEP",
                        help=f"steps to leave out ({', '.join(STEPS)})")
    parser.add_argument("--only", nargs="*", default=[], choices=STEPS, metavar="STEP",
                        help="run only these steps (e.g. what a first run's time limit left out)")
    parser.add_argument("--max-atoms", type=int, default=None, help="largest structure of the speed step")
    parser.add_argument("--time-limit", type=float, default=None, metavar="S",
                        help="end within S seconds: budgets shrink to what is left, and steps that no longer "
                             "fit are recorded as not run")
    parser.add_argument("--peer-python", nargs="*", default=[], metavar="TOOL=PYTHON",
                        help="time a peer with a python of its own (e.g. mace=/venvs/mace/bin/python) instead of "
                             "its wheels from benchmarks/gpu/peers.py prepare")
    args = parser.parse_args()
    if args.only:
        args.skip = [step for step in STEPS if step not in args.only or step in args.skip]
    peer_python = dict(item.split("=", 1) for item in args.peer_python)
    device = args.device
    plan = dict(PLAN[device])
    if args.max_atoms:
        plan["sizes"] = [n for n in plan["sizes"] if n <= args.max_atoms]
        plan["lammps_sizes"] = [n for n in plan["lammps_sizes"] if n <= args.max_atoms]
    report = Report(Path(args.out), device, args.time_limit)

    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print("torch sees no GPU: run with --cpu, or on the GPU machine", file=sys.stderr)
        return 2
    torch.set_num_threads(host_threads(device))

    with report.step("versions") as record:
        record["versions"] = versions(device)
        record["result"] = ", ".join(f"{k} {v}" for k, v in record["versions"].items())

    if "build" not in args.skip and report.due("build"):
        with report.step("build") as record:
            from mlff.lammps.build import build

            record["result"] = str(build(jobs=min(16, os.cpu_count() or 2)))

    if "tests" not in args.skip and report.due("tests"):
        with report.step("tests") as record:
            record["result"], passed = gpu_tests(device, "cuda and not compiles", report.out / "pytest.log")
            if not passed:
                record["status"] = "failed"

    with tempfile.TemporaryDirectory(prefix="mlff-gpu-check-") as tmp:
        workdir = Path(tmp)
        if "nve" not in args.skip and report.due("lammps_nve"):
            with report.step("lammps_nve") as record:
                record.update(nve_drift(workdir, device, plan["nve_steps"]))
                record["result"] = (f"drift {record['drift_ev_per_atom_ps']:.2e} eV/atom/ps over {record['steps']} "
                                    f"steps, {record['ms_per_step']} ms/step (256 atoms, float64)")

        files = functools.cache(lambda: model_files(workdir))  # built where a step needs them
        if "profile" not in args.skip and report.due("profile"):
            with report.step("profile") as record:
                record["rows"] = profile_calls(files(), device, plan["profile_sizes"], report.out)
                record["result"] = "; ".join(f"{r['model']} {r['dtype']} {r['atoms']}: model {r['model_ms']} of "
                                             f"{r['graph_ms'] + r['h2d_ms'] + r['model_ms'] + r['d2h_ms']:.1f} ms"
                                             for r in record["rows"])

        if "lammps_phases" not in args.skip and report.due("lammps_phases"):
            with report.step("lammps_phases") as record:
                rows = record["rows"] = []
                for name, dtype in (("shipped Cu", "float32"), ("matched 2x64 l2", "float32"),
                                    ("matched 2x64 l2", "float64")):
                    for size in plan["phase_sizes"]:
                        _, reps = fcc_cu(size)
                        row = {"model": name, "dtype": dtype, "atoms": 4 * reps[0] * reps[1] * reps[2]}
                        rows.append(row)
                        log = run_lammps(workdir, files()[name][dtype], device, reps, steps=10,
                                         extra_env={"MLFF_TIMING": "1"})
                        row["ms"] = round(lammps_ms_per_step(log), 2)
                        row["phases"] = lammps_phases(log, 10)
                        if lammps_chunk(log):
                            row["chunk"] = lammps_chunk(log)
                        report.write()
                # re-neighbouring, the one host cost graph device keeps: lists rebuilt every step
                _, reps = fcc_cu(max(plan["phase_sizes"]))
                for graph in ("device", "cells"):
                    if time.perf_counter() > report.deadline - MIN_STEP_S:
                        break
                    row = {"model": "shipped Cu", "dtype": "float32", "atoms": 4 * reps[0] * reps[1] * reps[2],
                           "variant": f"graph {graph}, lists rebuilt every step"}
                    rows.append(row)
                    log = run_lammps(workdir, files()["shipped Cu"]["float32"], device, reps, steps=10,
                                     extra_env={"MLFF_TIMING": "1"}, pair_options=f" graph {graph}",
                                     rebuild_every_step=True)
                    row["ms"] = round(lammps_ms_per_step(log), 2)
                    row["phases"] = lammps_phases(log, 10)
                    report.write()
                record["result"] = "; ".join(f"{r['model']} {r['dtype']}{_variant(r)} {r['atoms']}: {r['ms']} ms"
                                             for r in rows)

        if "speed" not in args.skip and report.due("speed"):
            with report.step("speed") as record:
                import mlff

                rows = record["rows"] = []
                # each model and dtype in one pass, then the matched model in chunks (bounded memory:
                # the largest system per GPU)
                variants = [(name, dtype, path, 0) for name, by_dtype in files().items()
                            for dtype, path in by_dtype.items()]
                variants += [(name, "float32", by_dtype["float32"], CHUNK_ATOMS) for name, by_dtype in files().items()
                             if name.startswith("matched") and "float32" in by_dtype]
                for name, dtype, path, chunk in variants:
                    deadline = min(time.perf_counter() + plan["speed_budget"], report.deadline - MIN_STEP_S)
                    for size in plan["sizes"]:
                        if time.perf_counter() > deadline:
                            break
                        atoms, _ = fcc_cu(size)
                        engine = f"MLFFCalculator chunk {chunk}" if chunk else "MLFFCalculator"
                        row = {"engine": engine, "model": name, "dtype": dtype, "atoms": len(atoms)}
                        rows.append(row)
                        try:
                            row.update(time_calculator(mlff.MLFFCalculator(path, device=device, chunk_atoms=chunk),
                                                       device, atoms, plan["max_call"], plan["measure_s"]))
                        except (RuntimeError, MemoryError) as error:  # TorchScript wraps CUDA OOM
                            row["note"] = ("out of memory" if is_out_of_memory(error)
                                           else str(error).splitlines()[0][:200])
                            if device == "cuda":
                                torch.cuda.empty_cache()
                            break
                        report.write()
                        if row.get("note"):
                            break
                if device == "cuda":  # this process's cached GPU memory would starve lmp's
                    torch.cuda.empty_cache()
                deadline = min(time.perf_counter() + plan["lammps_budget"], report.deadline - MIN_STEP_S)
                lammps_models = [("shipped Cu", "float32"), ("matched 2x64 l2", "float32"), ("matched 2x64 l2", "float64")]
                # 1 rank at every size for the float32 models, then 2 ranks sharing the device at the
                # largest size, then float64 (the last to go when the budget runs out)
                runs = [(name, dtype, size, 1) for name, dtype in lammps_models[:2] for size in plan["lammps_sizes"]]
                runs += [(name, dtype, plan["lammps_sizes"][-1], 2) for name, dtype in lammps_models[:2]]
                runs += [(name, dtype, size, 1) for name, dtype in lammps_models[2:] for size in plan["lammps_sizes"]]
                failed = set()
                for name, dtype, size, ranks in runs:
                    if time.perf_counter() > deadline:
                        break
                    if (name, dtype, ranks) in failed:
                        continue
                    _, reps = fcc_cu(size)
                    row = {"engine": f"LAMMPS {ranks} rank{'s' if ranks > 1 else ''}", "model": name, "dtype": dtype,
                           "atoms": 4 * reps[0] * reps[1] * reps[2]}
                    rows.append(row)
                    try:
                        log = run_lammps(workdir, files()[name][dtype], device, reps, steps=10, ranks=ranks)
                        ms = lammps_ms_per_step(log)
                        row.update({"ms": round(ms, 2), "atom_steps_per_s": round(row["atoms"] / ms * 1e3)})
                        if lammps_chunk(log):
                            row["chunk"] = lammps_chunk(log)
                    except Exception as error:  # out of memory on the device, typically
                        row["note"] = str(error).splitlines()[-1][:200] if str(error) else type(error).__name__
                        failed.add((name, dtype, ranks))  # no larger size of this model
                    report.write()
                best = [r for r in rows if "atom_steps_per_s" in r]
                record["result"] = f"{len(best)} timings; see the table"

        if "compiled" not in args.skip and report.due("compiled_layers"):
            with report.step("compiled_layers") as record:
                compiled_layers_step(record, workdir, files()["shipped Cu"]["float32"], "shipped Cu float32", device,
                                     plan["phase_sizes"], report)

        if "copy" not in args.skip and report.due("compiled_copy"):
            with report.step("compiled_copy") as record:
                compiled_copy_step(record, files()["shipped Cu"]["float32"], "shipped Cu float32", device,
                                   plan["phase_sizes"], plan, report.deadline - MIN_STEP_S, report)

        tools = peers_available(peer_python)
        if "peers" not in args.skip and tools and report.due("peers"):
            with report.step("peers") as record:
                record["rows"], record["notes"] = [], {}
                for k, tool in enumerate(tools):  # each gets its share of the time left
                    share = (report.left() - MIN_STEP_S) / (len(tools) - k)
                    if share < MIN_STEP_S:
                        record["notes"][tool] = [{"status": "not run: the time limit was reached before it"}]
                        continue
                    rows, notes = peer_rows(tool, device, plan, peer_python.get(tool),
                                            min(plan["peer_timeout"], share))
                    record["rows"] += rows
                    record["notes"][tool] = notes
                    report.write()
                timed = [r for r in record["rows"] if "atom_steps_per_s" in r]
                record["result"] = f"{len(timed)} peer timings ({', '.join(tools)}); " + "; ".join(
                    f"{tool}: {notes}" for tool, notes in record["notes"].items() if notes)[:600]
                if not timed:
                    record["status"] = "failed"

        if "largest" not in args.skip and report.due("largest"):
            with report.step("largest") as record:
                rows = record["rows"] = []
                for name, target in plan["largest"].items():
                    if args.max_atoms:
                        target = min(target, args.max_atoms)
                    if report.left() < MIN_STEP_S:
                        break
                    row = largest_system(files()[name]["float32"], device, target, plan["largest_chunk"],
                                         report.deadline - MIN_STEP_S)
                    rows.append(dict(row, model=name, dtype="float32"))
                    report.write()
                record["result"] = "; ".join(
                    f"{r['model']}: {r['atoms']} atoms " + (f"in {r['ms']} ms, {r['peak_mb']} MB" if "peak_mb" in r else
                                                          f"in {r['ms']} ms" if "ms" in r else r.get("note", ""))
                    for r in rows)

        if "train" not in args.skip and report.due("train"):
            with report.step("train") as record:
                record["rows"] = train_speed(workdir, device, plan["train_frames"], plan["train_epochs"])
                record["result"] = "; ".join(f"{r['model']} {r['dtype']}: {r['frames_per_s']} frames/s"
                                             for r in record["rows"])

    report.write()
    print((report.out / "gpu_check.md").read_text())
    failed = [name for name, record in report.data["steps"].items() if record["status"] != "ok"]
    print(f"steps not ok: {failed}" if failed else "all steps ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
