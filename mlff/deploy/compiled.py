"""A compiled (AOTInductor) copy of a potential, built on the machine that runs it.

TorchScript runs a model as ~3000 small operations per energy + forces call, each through the
interpreter and autograd: on a molecule or a cell of a few dozen atoms that overhead, not the
arithmetic, is the call. A compiled copy traces the energy *and its gradient* into one graph
(``make_fx`` unfolds ``autograd.grad``, the way NequIP compiles), exports it with the numbers of
atoms, edges, rows and neighbours as dynamic dimensions, and compiles it ahead of time with
Inductor into a C++ shared library (``torch._inductor.aoti_compile_and_package``). Element-wise
work is fused into loops, intermediates are freed as soon as they are dead, and there is no
interpreter.

A shared library runs code when it is loaded, so a model file never supplies one: ``mlff deploy
--compile`` only marks the file (the extra file ``compiled.json``), and the copy that runs is built
from the file's portable TorchScript weights on the machine that loads it, once, and kept in the
per-user cache of :mod:`mlff.aoti_cache` under the file's content digest. Files written by
earlier mlff versions with ``--compile`` carry a package (``compiled.pt2``); it is ignored unless
the user passes ``trust_native_code=True`` to :func:`mlff.load`.

The compiled graph is the same :class:`~mlff.model.Potential` code (one model definition), with
two inputs computed outside it because a graph for a compiler cannot derive shapes from values:
the edges sorted by centre and their dense per-centre layout (:func:`~mlff.nn.tensor_product.dense_rows`).
Two padding atoms with four edges longer than the cutoff are appended to every call, so the
dynamic dimensions never fall below 2 (a compiled graph specialises sizes 0 and 1); such edges
contribute exactly zero (the cutoff envelope and its derivative vanish there), and the padding
atoms' own outputs are cut off.

Limits, each with a fall back to TorchScript in :func:`mlff.load` (``compiled="auto"``) or a
clear error (``compiled=True``): CPU only, all atoms local (no ghosts), models without extra
output heads, a C++ compiler on the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from typing import Callable, Dict, List

import numpy as np
import torch
from torch import nn

from ..data import keys
from .contract import check_engine_inputs

PACKAGE_ENTRY = "compiled.pt2"  # extra file of older --compile exports: an AOTInductor package (native code)
INFO_ENTRY = "compiled.json"  # extra file: the model is meant to run compiled on the CPU
COMPILE_REQUEST = {"device": "cpu", "built_by": "the machine that loads the file"}  # INFO_ENTRY's content
OUTPUTS = (keys.ENERGY_KEY, keys.ATOMIC_ENERGY_KEY, keys.FORCES_KEY, keys.VIRIAL_KEY, keys.ATOMIC_VIRIAL_KEY)
_PAD_ATOMS = 2


class CompileError(RuntimeError):
    """The model cannot be compiled here (no C++ compiler, unsupported model or torch)."""


class _Entry(nn.Module):
    """Flat tensors in, the five standard outputs out: the signature that is traced."""

    def __init__(self, potential: nn.Module):
        super().__init__()
        self.potential = potential

    def forward(self, positions, edge_index, edge_shift, species, rows, slot, width):
        data = {
            keys.POSITIONS_KEY: positions,
            keys.SPECIES_KEY: species,
            keys.EDGE_INDEX_KEY: edge_index,
            keys.EDGE_SHIFT_KEY: edge_shift,
            keys.BATCH_KEY: torch.zeros_like(species),
            keys.PTR_KEY: torch.tensor([0, 1], dtype=torch.int64),
            keys.DENSE_ROWS_KEY: rows,
            keys.DENSE_SLOT_KEY: slot,
            keys.DENSE_WIDTH_KEY: width,
        }
        out = self.potential(data)
        return tuple(out[name] for name in OUTPUTS)


def compile_inputs(positions: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor,
                   species: torch.Tensor, r_cut: float) -> List[torch.Tensor]:
    """The compiled graph's inputs for one structure: padding atoms and edges appended, edges
    sorted by centre, their dense layout, all on the CPU in the boundary dtypes."""
    from ..nn.tensor_product import dense_rows

    n = positions.shape[0]
    far = 3.0 * float(r_cut)  # padding edges: longer than the cutoff, so exactly zero
    pad_index = torch.tensor([[n, n, n + 1, n + 1], [n + 1, n + 1, n, n]], dtype=torch.int64)
    pad_shift = torch.tensor([[far, 0.0, 0.0], [0.0, far, 0.0], [-far, 0.0, 0.0], [0.0, -far, 0.0]],
                             dtype=torch.float64)
    positions = torch.cat([positions.to(torch.float64), torch.zeros((_PAD_ATOMS, 3), dtype=torch.float64)])
    species = torch.cat([species.to(torch.int64), torch.zeros(_PAD_ATOMS, dtype=torch.int64)])
    edge_index = edge_index.to(torch.int64)
    order = torch.argsort(edge_index[0], stable=True)
    edge_index = torch.cat([edge_index[:, order], pad_index], dim=1)
    edge_shift = torch.cat([edge_shift.to(torch.float64)[order], pad_shift])
    rows, slot, k_max = dense_rows(edge_index[0], n + _PAD_ATOMS)
    width = torch.empty(k_max, dtype=torch.int8)  # only its length is read
    return [positions, edge_index, edge_shift, species, rows, slot, width]


def _example(potential) -> List[torch.Tensor]:
    """A small cluster of all the model's species on a jittered grid, for tracing."""
    r_cut = float(potential.r_cut)
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:13]
    positions = grid * (0.45 * r_cut) + rng.normal(0.0, 0.05 * r_cut, size=grid.shape)
    n = positions.shape[0]
    species = np.arange(n) % len(potential.species)
    diff = positions[None, :, :] - positions[:, None, :]
    dist = np.linalg.norm(diff, axis=-1)
    center, neighbour = np.nonzero((dist < r_cut) & ~np.eye(n, dtype=bool))
    edge_index = torch.tensor(np.stack([center, neighbour]), dtype=torch.int64)
    return compile_inputs(torch.tensor(positions), edge_index, torch.zeros((edge_index.shape[1], 3), dtype=torch.float64),
                          torch.tensor(species), r_cut)


@contextlib.contextmanager
def tracing_settings():
    """``use_duck_shape = False``: dimensions of equal size in the example stay independent
    symbols. Deterministic algorithms while compiling: Inductor then leaves scatter-adds (the
    force backward of the neighbour gather) to ATen instead of generating atomic adds, which are
    slower here and which torch 2.13 mis-compiles for transposed tiles."""
    import torch.fx.experimental._config as fx_config

    duck, deterministic = fx_config.use_duck_shape, torch.are_deterministic_algorithms_enabled()
    fx_config.use_duck_shape = False
    torch.use_deterministic_algorithms(True)
    try:
        with warnings.catch_warnings():  # torch's own deprecations inside tracing: not the user's to fix
            warnings.simplefilter("ignore")
            yield
    finally:
        fx_config.use_duck_shape = duck
        torch.use_deterministic_algorithms(deterministic)


def aoti_package(exported, path: str, fix: str) -> None:
    """AOT-compile an exported program into the package ``path`` (ending in .pt2); a failure is a
    :class:`CompileError` that says why (e.g. no C++ compiler) and ``fix``."""
    try:
        torch._inductor.aoti_compile_and_package(exported, package_path=path)
    except Exception as error:  # noqa: BLE001 - Inductor raises many kinds
        hint = "" if shutil.which("g++") or shutil.which("c++") else "no C++ compiler (g++) is on PATH; "
        raise CompileError(f"AOTInductor compilation failed ({type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else ''}); {hint}{fix}") from error


def compile_package(potential, directory: str) -> bytes:
    """Trace, export and AOT-compile ``potential`` (an eval-mode, frozen copy is made) for the CPU;
    returns the bytes of the ``.pt2`` package. Needs a C++ compiler (g++), about a minute."""
    import copy

    from torch.fx.experimental.proxy_tensor import make_fx

    if potential.graph_outputs:
        raise CompileError(f"compiling models with extra outputs ({potential.graph_outputs}) is not "
                           "supported; deploy without --compile")
    frozen = copy.deepcopy(potential).eval().to("cpu")
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    for layer in frozen.layers:
        if not layer.fused:
            raise CompileError("compiling needs the fused convolution (tp_backend='fused')")
    entry = _Entry(frozen)
    example = _example(frozen)
    with tracing_settings():
        graph = make_fx(entry, tracing_mode="symbolic", _allow_non_fake_inputs=True,
                        _error_on_data_dependent_ops=True)(*example)
        dim = torch.export.Dim
        atoms, edges, rows, width = (dim("num_atoms", min=2), dim("num_edges", min=2), dim("num_rows", min=2),
                                     dim("max_neighbours", min=2))
        exported = torch.export.export(graph, tuple(example), dynamic_shapes=(
            {0: atoms}, {1: edges}, {0: edges}, {0: atoms}, {0: rows}, {0: edges}, {0: width}))
        path = os.path.join(directory, "model.pt2")
        aoti_package(exported, path, "deploy without --compile")
    # the compiled graph must reproduce the model it was traced from
    compiled = CompiledPotential.from_file(path, float(frozen.r_cut), len(frozen.species))
    n = example[0].shape[0] - _PAD_ATOMS
    got = compiled(example[0][:n], example[1][:, :-4], example[2][:-4], example[3][:n])
    want = [value.detach() for value in entry(*example)]
    tol = 1e-8 if frozen.config.dtype == "float64" else 1e-3
    want = dict(zip(OUTPUTS, want))
    want[keys.ENERGY_KEY] = want[keys.ATOMIC_ENERGY_KEY][:n].sum(0, keepdim=True)  # without the padding
    for name, value in want.items():
        ref = value[0] if name in (keys.ENERGY_KEY, keys.VIRIAL_KEY) else value[:n]
        err = float((got[name] - ref).abs().max())
        if not err <= tol * max(1.0, float(ref.abs().max())):
            raise CompileError(f"the compiled model differs from the model in {name} by {err:.3g}; "
                               "deploy without --compile")
    with open(path, "rb") as handle:
        return handle.read()


def content_digest(module: torch.jit.ScriptModule, metadata) -> str:
    """SHA-256 of what a compiled copy is built from: the model file's metadata (config, species)
    and its weights (every tensor of the loaded module's state, by name). Two exports of the same
    model share it (the archive's bytes differ: TorchScript names code by the order of scripting)."""
    digest = hashlib.sha256(json.dumps({"config": metadata.config, "species": list(metadata.species),
                                        "r_cut": metadata.r_cut, "dtype": metadata.dtype},
                                       sort_keys=True).encode())
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def local_package_path(module: torch.jit.ScriptModule, metadata) -> str:
    """Where this machine keeps (or will keep) the compiled copy of a loaded model file."""
    from ..aoti_cache import cache_dir, key_of, machine, source_digest

    where = machine()
    key = key_of({"model": content_digest(module, metadata), "code": source_digest([__file__]),
                  "capability": where["capability"], "flags": where["flags"]})
    return os.path.join(cache_dir(), f"model-{key}.pt2")


def _say(message: str) -> None:
    print(f"mlff: {message}", file=sys.stderr, flush=True)


def build_local_package(path: str, module: torch.jit.ScriptModule, metadata, log: Callable[[str], None] = _say,
                        name: str = "") -> str:
    """The path of this machine's compiled copy of the model file ``path`` (its loaded ``module``
    and ``metadata``; called ``name`` in messages): built now from the file's weights (a few
    minutes; needs g++) unless the cache has it already."""
    from .load import model_from_file

    target = local_package_path(module, metadata)
    if os.path.exists(target):
        return target
    start = time.perf_counter()
    log(f"compiling {name or os.path.basename(path)} for this machine's CPU (once; a few minutes; cached in "
        f"{os.path.dirname(target)})")
    potential = model_from_file(path, tp_backend="fused")
    with tempfile.TemporaryDirectory(prefix="mlff_compile_") as directory:
        package = compile_package(potential, directory)
        partial = f"{target}.partial{os.getpid()}"
        try:
            with open(partial, "wb") as handle:
                handle.write(package)
            os.replace(partial, target)  # a killed compilation leaves no package under the final name
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    log(f"compiled in {time.perf_counter() - start:.0f} s")
    return target


class CompiledPotential:
    """Runs a compiled package with the engine contract of one structure, all atoms local:
    ``(positions, edge_index, edge_shift, species) -> {energy, atomic_energy, forces, virial,
    atomic_virial}``, float64."""

    def __init__(self, runner, r_cut: float, num_species: int):
        self.runner = runner
        self._lock = threading.Lock()  # one runner: calls from several threads take turns
        self.r_cut = float(r_cut)
        self.num_species = int(num_species)

    @classmethod
    def from_file(cls, path: str, r_cut: float, num_species: int) -> "CompiledPotential":
        return cls(torch._inductor.aoti_load_package(path), r_cut, num_species)

    @classmethod
    def from_bytes(cls, package: bytes, r_cut: float, num_species: int) -> "CompiledPotential":
        with tempfile.TemporaryDirectory(prefix="mlff_aoti_") as directory:
            path = os.path.join(directory, "model.pt2")
            with open(path, "wb") as handle:
                handle.write(package)
            return cls.from_file(path, r_cut, num_species)  # the loader keeps what it needs in memory

    def __call__(self, positions: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor,
                 species: torch.Tensor) -> Dict[str, torch.Tensor]:
        n = positions.shape[0]
        # the checks of the scripted model: a compiled kernel does not bounds-check its indices
        check_engine_inputs(positions, edge_index, edge_shift, species, n, self.num_species)
        inputs = compile_inputs(positions.cpu(), edge_index.cpu(), edge_shift.cpu(), species.cpu(), self.r_cut)
        with self._lock:
            energy, atomic_energy, forces, virial, atomic_virial = self.runner(*inputs)
        atomic_energy = atomic_energy[:n].to(torch.float64)
        return {
            keys.ENERGY_KEY: atomic_energy.sum(),  # without the padding atoms' energies
            keys.ATOMIC_ENERGY_KEY: atomic_energy,
            keys.FORCES_KEY: forces[:n].to(torch.float64),
            keys.VIRIAL_KEY: virial[0].to(torch.float64),
            keys.ATOMIC_VIRIAL_KEY: atomic_virial[:n].to(torch.float64),
        }
