"""The peers on the device, next to mlff: MACE, NequIP and SevenNet at the matched size (2 layers,
64 channels, l_max 2, r_cut 5 Å, 8 Bessel functions, radial MLP of width 64; MACE with its comparable
``64x0e+64x1o`` hidden irreps and correlation order 3, as in benchmarks/train_peers.py), timed through
their ASE calculators on the structures mlff's rows use (``timing.fcc_cu``), by ``timing.time_calculator``.

Two verbs:

    python benchmarks/gpu/peers.py prepare --mace $PEERS/mace/bin/python --nequip $PEERS/nequip/bin/python \
        --sevenn $PEERS/sevenn/bin/python

on a machine with network and the peers installed (``pip install mace-torch==0.3.16``,
``pip install nequip==0.19.1``, ``pip install sevenn==0.13.0``, each in its own venv): downloads each
peer's wheels for the GPU machine's Python (3.12) into ``.whl/peers/<tool>/`` -- only what that
machine lacks, pure Python except for matscipy; SevenNet's without its pretrained checkpoints
(40 of its 43 MB) -- and builds NequIP's matched model as a package (``nequip-package``, from a
one-epoch ``nequip-train`` on 8 Cu frames: speed does not depend on the weights), which the device
compiles with AOTInductor for its GPU (``nequip-compile --mode aotinductor``; where that fails, its
log is kept and NequIP's eager model is timed instead, under that name). SevenNet runs its e3nn
path in float32: its float64 calculator stops with "both inputs should have same dtype" (its
model's weights stay float32), and its cuEquivariance path needs cuequivariance-ops-cu13, a 32 MB
wheel the bundle has no room for.

    python benchmarks/gpu/peers.py time --tool mace --device cuda --sizes 1000 8000 ... --budget 60

in the peer's environment (the check's python with ``PYTHONPATH`` at the peer's installed wheels):
prints one JSON row per timing, as the device check's speed rows. MACE's model is built here, untrained,
from its own constructor; NequIP's is the compiled package.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from timing import fcc_cu, host_threads, is_out_of_memory, time_calculator  # noqa: E402

# what importing each peer's model and ASE calculator loads beyond the GPU machine's own packages (torch,
# numpy, scipy, h5py, pandas, matplotlib, lightning, torchmetrics, opt-einsum(-fx), pyyaml, requests, tqdm,
# torch-geometric, scikit-learn) and mlff's carried ase, vesin and e3nn; MACE pins e3nn 0.4.4 and gets its own copy
PEER_PACKAGES = {
    "mace": ("mace-torch", "e3nn==0.4.4", "matscipy", "torch-ema", "lmdb", "orjson"),
    "nequip": ("nequip", "hydra-core", "omegaconf", "antlr4-python3-runtime", "matscipy"),
    "sevenn": ("sevenn", "braceexpand", "matscipy"),
}
# files left out of a peer's wheel (the bundle for the device stays under 64 MiB): name -> dropped?
SLIM = {"sevenn": lambda name: name.startswith("sevenn/pretrained_potentials/") and name.endswith(".pth")}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
MATCHED = dict(num_layers=2, num_features=64, l_max=2, r_cut=5.0, num_bessel=8, cutoff_p=6, radial_width=64)


def _pinned(python: str, spec: str) -> str:
    """``spec`` at the version installed in the peer's venv (an explicit pin wins)."""
    if "==" in spec:
        return spec
    out = subprocess.run([python, "-c", f"from importlib import metadata; print(metadata.version({spec!r}))"],
                         capture_output=True, text=True, check=True)
    return f"{spec}=={out.stdout.strip()}"


def download(tool: str, python: str, dest: Path) -> list:
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    specs = [_pinned(python, spec) for spec in PEER_PACKAGES[tool]]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(dest), "-q"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    for spec in specs:
        if subprocess.run(cmd + [spec]).returncode != 0:  # no wheel on PyPI (a pure-Python sdist): build one
            subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), spec], check=True)
    if tool in SLIM:
        from wheels import slim

        for wheel in dest.glob(f"{tool}-*.whl"):
            slim(wheel, SLIM[tool])
    return sorted(dest.glob("*.whl"))


def nequip_package(python: str, dest: Path, dtype: str) -> Path:
    """NequIP's matched model (benchmarks/train_peers.py's configuration), one epoch on 8 Cu EMT
    frames, as a package file (``dest``)."""
    from types import SimpleNamespace

    from ase.io import read, write

    sys.path.insert(0, str(HERE.parent))
    from train_peers import _nequip

    bindir = Path(python).parent
    with tempfile.TemporaryDirectory(prefix="nequip-prep-") as work:
        frames = [f for f in read(ROOT / "datasets" / "cu_emt.extxyz", ":") if len(f) == 32][:8]
        for atoms in frames:  # labels under keys of their own (nequip maps them)
            atoms.info["REF_energy"], atoms.arrays["REF_forces"] = atoms.get_potential_energy(), atoms.get_forces()
            atoms.calc = None
        write(Path(work) / "train.extxyz", frames[:6])
        write(Path(work) / "valid.extxyz", frames[6:])
        args = SimpleNamespace(train=str(Path(work) / "train.extxyz"), valid=str(Path(work) / "valid.extxyz"),
                               energy_key="REF_energy", forces_key="REF_forces", batch_size=2, dtype=dtype,
                               nequip=str(bindir / "nequip-train"))
        subprocess.run(_nequip(args, work, 1, ["Cu"], checkpoint_dir=work), check=True, capture_output=True,
                       cwd=work, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        ckpt = next(Path(work).glob("*.ckpt"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(bindir / "nequip-package"), "build", str(ckpt), str(dest)], check=True,
                       capture_output=True)
    return dest


def prepare(args) -> int:
    dest = Path(args.dest)
    total = 0
    for tool, python in (("mace", args.mace), ("nequip", args.nequip), ("sevenn", args.sevenn)):
        if not python:
            continue
        wheels = download(tool, python, dest / tool)
        total += sum(w.stat().st_size for w in wheels)
        if tool == "nequip":
            for dtype in ("float32", "float64"):
                package = nequip_package(python, dest / tool / f"matched_{dtype}.nequip.zip", dtype)
                total += package.stat().st_size
        for path in sorted((dest / tool).iterdir()):
            print(f"{path.stat().st_size / 2**20:7.2f} MiB  {path}")
    print(f"{total / 2**20:7.1f} MiB for the peers in {dest}/")
    return 0


# --- on the device ----------------------------------------------------------------------------------


def mace_calculator(device: str, dtype: str):
    # e3nn 0.4.4, which MACE pins, unpickles its own constants with torch.load's pre-2.6 default
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    import numpy as np
    import torch
    from e3nn import o3
    from mace import modules
    from mace.calculators import MACECalculator

    torch.set_default_dtype(getattr(torch, dtype))
    model = modules.ScaleShiftMACE(
        r_max=MATCHED["r_cut"], num_bessel=MATCHED["num_bessel"], num_polynomial_cutoff=MATCHED["cutoff_p"],
        max_ell=MATCHED["l_max"], interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=MATCHED["num_layers"], num_elements=1,
        hidden_irreps=o3.Irreps(f"{MATCHED['num_features']}x0e+{MATCHED['num_features']}x1o"),
        MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.array([-3.0]), avg_num_neighbors=42.0,
        atomic_numbers=[29], correlation=3, gate=torch.nn.functional.silu,
        radial_MLP=[MATCHED["radial_width"]] * 3, atomic_inter_scale=1.0, atomic_inter_shift=0.0)
    return MACECalculator(models=model, device=device, default_dtype=dtype)


def sevenn_calculator(device: str, dtype: str):
    """SevenNet's matched model (untrained, one species), through its e3nn path."""
    import sevenn._keys as key
    import torch
    from sevenn._const import model_defaults
    from sevenn.calculator import SevenNetCalculator
    from sevenn.model_build import build_E3_equivariant_model

    torch.set_default_dtype(getattr(torch, dtype))
    config = dict(model_defaults({}))
    config.update({
        key.CUTOFF: MATCHED["r_cut"], key.NODE_FEATURE_MULTIPLICITY: MATCHED["num_features"],
        key.LMAX: MATCHED["l_max"], key.IS_PARITY: False, key.NUM_CONVOLUTION: MATCHED["num_layers"],
        key.CONVOLUTION_WEIGHT_NN_HIDDEN_NEURONS: [MATCHED["radial_width"]] * 2,
        key.RADIAL_BASIS: {key.RADIAL_BASIS_NAME: "bessel", key.BESSEL_BASIS_NUM: MATCHED["num_bessel"]},
        key.CUTOFF_FUNCTION: {key.CUTOFF_FUNCTION_NAME: "poly_cut", key.POLY_CUT_P: MATCHED["cutoff_p"]},
        key.CONV_DENOMINATOR: 42.0, key.SHIFT: 0.0, key.SCALE: 1.0,
        key.CHEMICAL_SPECIES: ["Cu"], key.NUM_SPECIES: 1, key.TYPE_MAP: {29: 0}})
    model = build_E3_equivariant_model(config)
    model.eval()
    return SevenNetCalculator(model=model, file_type="model_instance", device=device)


def nequip_calculator(device: str, dtype: str, workdir: Path, packages: Path):
    from nequip.integrations.ase import NequIPCalculator

    package = packages / f"matched_{dtype}.nequip.zip"
    compiled = workdir / f"matched_{dtype}.nequip.pt2"
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "nequip.scripts.compile", str(package), str(compiled),
                          "--mode", "aotinductor", "--device", device, "--target", "ase"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        log = res.stdout + res.stderr
        if os.environ.get("OUT"):  # the whole log beside the check's report
            Path(os.environ["OUT"], f"nequip_compile_{dtype}.log").write_text(log)
        errors = [line for line in log.splitlines() if "Error" in line or "error:" in line]
        print(json.dumps({"compile_failed": f"exit status {res.returncode}", "dtype": dtype,
                          "errors": " | ".join(errors[-3:])[-1000:]}), flush=True)
        # its eager model instead, so that NequIP still has a row (named as such)
        return NequIPCalculator._from_saved_model(str(package), device=device,
                                                  chemical_species_to_atom_type_map={"Cu": "Cu"}), "eager"
    print(json.dumps({"compile_s": round(time.perf_counter() - start, 1), "dtype": dtype}), flush=True)
    return NequIPCalculator.from_compiled_model(str(compiled), device=device,
                                                chemical_species_to_atom_type_map={"Cu": "Cu"}), "AOTInductor"


def time_tool(args) -> int:
    import torch

    torch.set_num_threads(host_threads(args.device))  # as mlff's rows
    names = {"mace": "MACE 64x0e+64x1o L2 c3", "nequip": "NequIP 2x64 l2", "sevenn": "SevenNet 2x64 l2"}
    with tempfile.TemporaryDirectory(prefix=f"{args.tool}-speed-") as tmp:
        for dtype in args.dtypes:
            try:
                if args.tool == "mace":
                    calc, mode = mace_calculator(args.device, dtype), None
                elif args.tool == "sevenn":
                    calc, mode = sevenn_calculator(args.device, dtype), None
                else:
                    calc, mode = nequip_calculator(args.device, dtype, Path(tmp), Path(args.packages))
            except Exception as error:  # a peer that cannot be set up is a row, not the end of the check
                print(json.dumps({"engine": "ASE", "model": names[args.tool], "dtype": dtype,
                                  "note": f"{type(error).__name__}: {str(error)[-1000:]}"}), flush=True)
                continue
            deadline = time.perf_counter() + args.budget
            for size in args.sizes:
                if time.perf_counter() > deadline:
                    break
                atoms, _ = fcc_cu(size)
                model = names[args.tool] + (f" ({mode})" if mode else "")
                row = {"engine": "ASE", "model": model, "dtype": dtype, "atoms": len(atoms)}
                try:
                    row.update(time_calculator(calc, args.device, atoms, args.max_call, args.measure_s))
                except Exception as error:
                    row["note"] = "out of memory" if is_out_of_memory(error) else str(error).splitlines()[0][:200]
                print(json.dumps(row), flush=True)
                if row.get("note"):
                    break
            del calc
            if args.device == "cuda":
                torch.cuda.empty_cache()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    prep = sub.add_parser("prepare", help="wheels and NequIP's package for the device (needs network)")
    prep.add_argument("--mace", help="python of a venv with mace-torch installed")
    prep.add_argument("--nequip", help="python of a venv with nequip installed")
    prep.add_argument("--sevenn", help="python of a venv with sevenn installed")
    prep.add_argument("--dest", default=str(ROOT / ".whl" / "peers"))
    timer = sub.add_parser("time", help="time one peer (in its environment)")
    timer.add_argument("--tool", choices=["mace", "nequip", "sevenn"], required=True)
    timer.add_argument("--device", default="cuda")
    timer.add_argument("--sizes", type=int, nargs="+", required=True)
    timer.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    timer.add_argument("--budget", type=float, default=60.0, help="seconds per dtype; no larger size after it")
    timer.add_argument("--max-call", type=float, default=10.0)
    timer.add_argument("--measure-s", type=float, default=3.0, help="seconds of calls each timing averages")
    timer.add_argument("--packages", default=str(ROOT / ".whl" / "peers" / "nequip"))
    args = parser.parse_args()
    return prepare(args) if args.verb == "prepare" else time_tool(args)


if __name__ == "__main__":
    sys.exit(main())
