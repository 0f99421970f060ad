"""A compiled (AOTInductor) copy of a potential, built on the machine that runs it.

TorchScript runs a model as ~3000 small operations per energy + forces call, each through the
interpreter and autograd: on a molecule or a cell of a few dozen atoms that overhead, not the
arithmetic, is the call. A compiled copy traces the energy *and its gradient* into one graph
(``make_fx`` unfolds ``autograd.grad``, the way NequIP compiles), exports it with the numbers of
atoms, edges, rows and neighbours as dynamic dimensions, and compiles it ahead of time with
Inductor into a C++ shared library (:mod:`mlff.aoti`). Element-wise
work is fused into loops, intermediates are freed as soon as they are dead, and there is no
interpreter.

A shared library runs code when it is loaded, so a model file never supplies one: ``mlff deploy
--compile`` only marks the file (the extra file ``compiled.json``), and the copy that runs is built
from the file's portable TorchScript weights on the machine that loads it, once, and kept in the
per-user cache of :mod:`mlff.aoti` under the file's content digest. Files written by
earlier mlff versions with ``--compile`` carry a package (``compiled.pt2``); it is ignored unless
the user passes ``trust_native_code=True`` to :func:`mlff.load`.

The compiled graph is the same :class:`~mlff.model.Potential` code (one model definition), with
two inputs computed outside it because a graph for a compiler cannot derive shapes from values:
the edges sorted by centre and their dense per-centre layout (:func:`~mlff.model.potential.with_edge_layout`).
Two padding atoms with four edges longer than the cutoff are appended to every call, so the
dynamic dimensions never fall below 2 (a compiled graph specialises sizes 0 and 1); such edges
contribute exactly zero (the cutoff envelope and its derivative vanish there), and the padding
atoms' own outputs are cut off.

The copy is built for the device the model is loaded on: the CPU, or a GPU (``mlff.load(path,
device="cuda", compiled=True)``; Inductor's GPU kernels, keyed by the GPU's compute capability
too). On a GPU ``compiled="auto"`` runs TorchScript: the copy runs there only when asked for.

Limits, each with a fall back to TorchScript in :func:`mlff.load` (``compiled="auto"``) or a
clear error (``compiled=True``): all atoms local (no ghosts), models without extra output heads, a
C++ compiler on the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from .. import aoti
from ..aoti import CompileError
from ..data import keys
from .contract import check_engine_inputs

PACKAGE_ENTRY = "compiled.pt2"  # extra file of older --compile exports: an AOTInductor package (native code)
INFO_ENTRY = "compiled.json"  # extra file: the model is meant to run compiled (on the CPU; a GPU when asked)
COMPILE_REQUEST = {"device": "cpu", "built_by": "the machine that loads the file"}  # INFO_ENTRY's content
OUTPUTS = (keys.ENERGY_KEY, keys.ATOMIC_ENERGY_KEY, keys.FORCES_KEY, keys.VIRIAL_KEY, keys.ATOMIC_VIRIAL_KEY)
_PAD_ATOMS = 2


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
            keys.PTR_KEY: torch.tensor([0, 1], dtype=torch.int64, device=positions.device),
            keys.DENSE_ROWS_KEY: rows,
            keys.DENSE_SLOT_KEY: slot,
            keys.DENSE_WIDTH_KEY: width,
        }
        out = self.potential(data)
        return tuple(out[name] for name in OUTPUTS)


def compile_inputs(positions: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor,
                   species: torch.Tensor, r_cut: float) -> List[torch.Tensor]:
    """The compiled graph's inputs for one structure: padding atoms and edges appended (their
    centres come last, so sorting keeps them at the end), edges sorted by centre with their dense
    layout (:func:`~mlff.model.potential.with_edge_layout`), all on ``positions``' device in the
    boundary dtypes."""
    from ..model.potential import with_edge_layout  # the model code: imported only where a copy runs

    n, device = positions.shape[0], positions.device
    far = 3.0 * float(r_cut)  # padding edges: longer than the cutoff, so exactly zero
    pad_index = torch.tensor([[n, n, n + 1, n + 1], [n + 1, n + 1, n, n]], dtype=torch.int64, device=device)
    pad_shift = torch.tensor([[far, 0.0, 0.0], [0.0, far, 0.0], [-far, 0.0, 0.0], [0.0, -far, 0.0]],
                             dtype=torch.float64, device=device)
    data = with_edge_layout({
        keys.POSITIONS_KEY: torch.cat([positions.to(torch.float64),
                                       torch.zeros((_PAD_ATOMS, 3), dtype=torch.float64, device=device)]),
        keys.EDGE_INDEX_KEY: torch.cat([edge_index.to(device, torch.int64), pad_index], dim=1),
        keys.EDGE_SHIFT_KEY: torch.cat([edge_shift.to(device, torch.float64), pad_shift]),
    })
    species = torch.cat([species.to(device, torch.int64), torch.zeros(_PAD_ATOMS, dtype=torch.int64, device=device)])
    return [data[keys.POSITIONS_KEY], data[keys.EDGE_INDEX_KEY], data[keys.EDGE_SHIFT_KEY], species,
            data[keys.DENSE_ROWS_KEY], data[keys.DENSE_SLOT_KEY], data[keys.DENSE_WIDTH_KEY]]


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


def compile_package(potential, path: str, log: Optional[Callable[[str], None]] = None, device: str = "cpu") -> None:
    """Trace, export and AOT-compile ``potential`` (an eval-mode, frozen copy is made) for
    ``device`` (``cpu``, ``cuda`` or ``cuda:N``) into the package ``path``, and check it against the
    model there. Needs a C++ compiler (g++), about a minute on the CPU."""
    import copy

    fix = "deploy without --compile" if torch.device(device).type == "cpu" else "load it with compiled=False"
    if potential.graph_outputs:
        raise CompileError(f"compiling models with extra outputs ({potential.graph_outputs}) is not "
                           f"supported; {fix}")
    frozen = copy.deepcopy(potential).eval().to(device)
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    for layer in frozen.layers:
        if not layer.fused:
            raise CompileError(f"compiling needs the fused convolution (tp_backend='fused'); {fix}")
    entry = _Entry(frozen)
    example = [t.to(device) for t in _example(frozen)]
    d = aoti.dynamic_dims("num_atoms", "num_edges", "num_rows", "max_neighbours")
    aoti.compile_package(entry, example, example, (
        {0: d["num_atoms"]}, {1: d["num_edges"]}, {0: d["num_edges"]}, {0: d["num_atoms"]}, {0: d["num_rows"]},
        {0: d["num_edges"]}, {0: d["max_neighbours"]}), path, fix, log)
    # the compiled graph must reproduce the model it was traced from
    if log is not None:
        log("  checking it against the model")
    compiled = CompiledPotential.from_file(path, float(frozen.r_cut), len(frozen.species), device)
    n = example[0].shape[0] - _PAD_ATOMS
    got = compiled(example[0][:n], example[1][:, :-4], example[2][:-4], example[3][:n])
    want = dict(zip(OUTPUTS, entry(*example)))
    want[keys.ENERGY_KEY] = want[keys.ATOMIC_ENERGY_KEY][:n].sum(0, keepdim=True)  # without the padding
    pairs = [(name, got[name], value[0] if name in (keys.ENERGY_KEY, keys.VIRIAL_KEY) else value[:n])
             for name, value in want.items()]
    try:
        aoti.check_outputs(pairs, torch.float64 if frozen.config.dtype == "float64" else torch.float32,
                           "the compiled model", fix)
    except CompileError:
        os.remove(path)
        raise


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


def local_package_path(module: torch.jit.ScriptModule, metadata, device: str = "cpu") -> str:
    """Where this machine keeps (or will keep) the compiled copy of a loaded model file for
    ``device`` (a GPU's copy is keyed by its name and compute capability as well)."""
    where = aoti.machine()
    parts = {"model": content_digest(module, metadata), "code": aoti.source_digest([__file__]),
             "capability": where["capability"], "flags": where["flags"]}
    if torch.device(device).type == "cuda":
        index = torch.device(device).index or 0
        parts["cuda"] = [torch.cuda.get_device_name(index), list(torch.cuda.get_device_capability(index)),
                         torch.version.cuda]
    return os.path.join(aoti.cache_dir(), f"model-{aoti.key_of(parts)}.pt2")


def device_words(device: str) -> str:
    """``this machine's CPU`` or ``this machine's GPU (cuda:0)``: where a copy is built for, in messages."""
    dev = torch.device(device)
    return "this machine's CPU" if dev.type == "cpu" else f"this machine's GPU (cuda:{dev.index or 0})"


def _say(message: str) -> None:
    print(f"mlff: {message}", file=sys.stderr, flush=True)


def build_local_package(path: str, module: torch.jit.ScriptModule, metadata, log: Callable[[str], None] = _say,
                        name: str = "", device: str = "cpu") -> str:
    """The path of this machine's compiled copy of the model file ``path`` (its loaded ``module``
    and ``metadata``; called ``name`` in messages) for ``device``: built now from the file's weights
    (a few minutes; needs g++) unless the cache has it already."""
    from .load import model_from_file

    target = local_package_path(module, metadata, device)
    if os.path.exists(target):
        return target
    start = time.perf_counter()
    log(f"compiling {name or os.path.basename(path)} for {device_words(device)} (once; a few minutes; cached in "
        f"{os.path.dirname(target)})")
    compile_package(model_from_file(path, tp_backend="fused"), target, log, device)
    log(f"compiled in {time.perf_counter() - start:.0f} s")
    return target


class CompiledPotential:
    """Runs a compiled package with the engine contract of one structure, all atoms local:
    ``(positions, edge_index, edge_shift, species) -> {energy, atomic_energy, forces, virial,
    atomic_virial}``, float64, on the package's ``device``."""

    def __init__(self, runner, r_cut: float, num_species: int, device: str = "cpu"):
        self.runner = runner
        self._lock = threading.Lock()  # one runner: calls from several threads take turns
        self.r_cut = float(r_cut)
        self.num_species = int(num_species)
        self.device = torch.device(device)

    @classmethod
    def from_file(cls, path: str, r_cut: float, num_species: int, device: str = "cpu") -> "CompiledPotential":
        dev = torch.device(device)
        runner = aoti.load_package(path, "the compiled model", "delete it to compile again, or load with compiled=False",
                                   device_index=-1 if dev.type == "cpu" else (dev.index or 0))
        return cls(runner, r_cut, num_species, device)

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
        d = self.device
        inputs = compile_inputs(positions.to(d), edge_index.to(d), edge_shift.to(d), species.to(d), self.r_cut)
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
