"""Compiled (AOTInductor) layers of the halo protocol: what ``pair_style mlff`` runs instead of the
TorchScript layers when this machine has built them (``mlff lammps compile model.pt``).

The halo protocol (:mod:`mlff.modelfile.halo`) calls each interaction layer on the local atoms,
exchanges the ghost atoms' features, and runs the layers' backward passes in reverse order. Here
each layer ``k`` becomes two compiled functions, traced from the same model code as the file's
``halo_layer`` (:meth:`~mlff.modelfile.export.DeployedPotential.layer_local`):

* ``layer<k>_forward(x, species, edge_index, edge_sh, edge_radial, rows, slot, width, local) ->
  (y, aggregated)``: the new features ``(n_local, F)`` of the local atoms and their neighbour sums
  (the convolution's output, ``(n_local, M)``), which the engine keeps for the backward;
* ``layer<k>_backward(..., local, aggregated, grad_y) -> (grad_x, grad_sh, grad_radial)`` (layer 0:
  without ``grad_x``): the gradients, with no autograd graph alive between the forward and the
  backward (the chunked protocol's order, with whole layers). The backward recomputes the per-edge
  terms the convolution's gradient needs, but not the convolution itself (the largest product):
  its output is the saved ``aggregated``.

``rows, slot, width`` are the edges' dense per-centre layout (:func:`dense_layout`) and ``local``
any tensor of ``n_local`` rows (``species[:n_local]``): a compiled graph takes sizes from its
inputs' shapes, never from values. Every size must be at least 2 (a compiled graph specialises 0
and 1): :func:`usable` says when; smaller calls run the TorchScript layers (same numbers).

A compiled package is native code, so it is never taken from a model file (docs/trust.md): it is
built from the file's portable weights on the machine that runs it, for one device, and kept in the
per-user cache of :mod:`mlff.aoti`, in the folder :func:`package_dir` names. The packages are
compiled side by side, each by a worker process (:mod:`mlff.modelfile.compile_worker`) that rebuilds
the model from the same file; the building process checks each one. The LAMMPS plugin
finds the folder from the same parts, computed the same way: SHA-256 of the model file's bytes, the
device (``cpu`` or ``cuda``), the torch version (without its local tag), the CPU's instruction set
(:func:`mlff.aoti.machine`) and :data:`PROTOCOL`. ``manifest.txt`` is written last: a folder without
one is incomplete and is built again. It records how much faster the compiled layers ran than
TorchScript on two test cells here (``speedups``; ``speedup`` the smaller, ``faster``):
``pair_style mlff`` (``compiled auto``) runs them only where they were faster at both sizes. Compiled layers recompute each layer in the backward pass,
so they win where TorchScript's per-operation overhead dominates (small, light models) and lose
on the CPU where the tensor products do (see docs/lammps.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .. import aoti
from ..aoti import CompileError
from ..nn.tensor_product import dense_rows
from .compiled_copy import _say  # progress lines on stderr, as `mlff deploy --compile` prints them

PROTOCOL = 2  # the compiled functions' signatures; the plugin reads folders of this version only
MANIFEST = "manifest.txt"
# `compiled auto` runs the compiled layers only where they were at least this much faster than
# TorchScript at every size timed: within it, two timings of the same code differ by chance here
# (0.94-1.05x over four timings of the shipped potential at 4000 atoms on a 2-core CPU), and a
# tie keeps the portable path.
FASTER_MARGIN = 1.05


# ---- the traced functions -------------------------------------------------------------------------
# A layer is its neighbour sums (``aggregated``: the convolution, the expensive part) followed by a
# per-atom update; these are the same calls, in the same order, as the file's ``halo_layer``
# (DeployedPotential.layer_local), against which each compiled package is checked.
def _aggregate(deployed: nn.Module, index: int, x, edge_index, edge_sh, edge_radial, n_local, layout):
    layer = deployed.potential.layers[index]
    return layer.aggregate(layer.linear_in(x), edge_sh, deployed._layer_radial(edge_radial), edge_index[0],
                           edge_index[1], 0, n_local, layout)


def _update(deployed: nn.Module, index: int, aggregated, x, species, edge_index, edge_radial, n_local):
    attrs = deployed.potential.attributes(species)
    y = deployed.potential.layers[index].update(aggregated, x[:n_local], attrs[:n_local])
    return deployed._with_pair(index, y, edge_index, edge_radial, n_local)


class LayerForward(nn.Module):
    """Layer ``index`` of a :class:`~mlff.modelfile.export.DeployedPotential` (eager) on the local
    atoms: its output ``y`` and its neighbour sums (kept for the backward)."""

    def __init__(self, deployed: nn.Module, index: int):
        super().__init__()
        self.deployed, self.index = deployed, int(index)

    def forward(self, x, species, edge_index, edge_sh, edge_radial, rows, slot, width, local):
        n_local = local.shape[0]
        aggregated = _aggregate(self.deployed, self.index, x, edge_index, edge_sh, edge_radial, n_local,
                                (rows, slot, width.shape[0]))
        return _update(self.deployed, self.index, aggregated, x, species, edge_index, edge_radial, n_local), aggregated


class LayerBackward(nn.Module):
    """The gradients of ``sum(layer(x) * grad_y)`` w.r.t. ``x`` (layers after the first), the edges'
    spherical harmonics and their radial input, from the forward's neighbour sums: the update is
    differentiated at them, and the convolution's gradient is taken without its output (the
    compiled graph recomputes the per-edge terms the gradient needs, not the sums)."""

    def __init__(self, deployed: nn.Module, index: int):
        super().__init__()
        self.deployed, self.index = deployed, int(index)
        self.need_x = int(index) > 0  # layer 0's input (the species embedding) is fixed

    def forward(self, x, species, edge_index, edge_sh, edge_radial, rows, slot, width, local, aggregated, grad_y):
        n_local = local.shape[0]
        x = x.detach().requires_grad_(self.need_x)
        sh = edge_sh.detach().requires_grad_(True)
        radial = edge_radial.detach().requires_grad_(True)
        sums = aggregated.detach().requires_grad_(True)
        y = _update(self.deployed, self.index, sums, x, species, edge_index, radial, n_local)
        inputs = [sums, radial, x] if self.need_x else [sums, radial]
        from_update = torch.autograd.grad([y], inputs, [grad_y.to(y.dtype)], allow_unused=True)
        conv = _aggregate(self.deployed, self.index, x, edge_index, sh, radial, n_local, (rows, slot, width.shape[0]))
        inputs = [sh, radial, x] if self.need_x else [sh, radial]
        from_conv = torch.autograd.grad([conv], inputs, [from_update[0]], allow_unused=True)

        def total(*grads, like):
            present = [g for g in grads if g is not None]
            return sum(present[1:], present[0]) if present else torch.zeros_like(like)

        grad_sh = total(from_conv[0], like=sh)
        grad_radial = total(from_update[1], from_conv[1], like=radial)
        if not self.need_x:
            return grad_sh, grad_radial
        return total(from_update[2], from_conv[2], like=x), grad_sh, grad_radial


def _reference_layer(deployed: nn.Module, index: int, example: Sequence[torch.Tensor]) -> torch.Tensor:
    x, species, edge_index, sh, radial, rows, slot, width, local = example
    return deployed.layer_local(index, x, species, edge_index, sh, radial, local.shape[0], None)


def _reference_grads(deployed: nn.Module, index: int, example: Sequence[torch.Tensor], grad_y: torch.Tensor):
    """What :class:`LayerBackward` returns, by autograd through the whole layer."""
    x, species, edge_index, sh, radial, rows, slot, width, local = example
    need_x = index > 0
    x, sh, radial = x.detach().requires_grad_(need_x), sh.detach().requires_grad_(True), radial.detach().requires_grad_(True)
    y = _reference_layer(deployed, index, [x, species, edge_index, sh, radial, rows, slot, width, local])
    inputs = [x, sh, radial] if need_x else [sh, radial]
    grads = torch.autograd.grad([y], inputs, [grad_y], allow_unused=True)
    return tuple(torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs))


def dense_layout(edge_index: torch.Tensor, n_local: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``rows, slot, width`` of edges sorted by centre (all centres local): ``width`` is an empty
    int8 tensor whose length is the largest number of edges of one centre."""
    rows, slot, k_max = dense_rows(edge_index[0], n_local)
    return rows, slot, torch.empty(k_max, dtype=torch.int8, device=edge_index.device)


def usable(n_local: int, num_edges: int, rows: torch.Tensor, width: torch.Tensor) -> bool:
    """Whether a call's sizes are within what the compiled graphs accept (each at least 2)."""
    return min(n_local, num_edges, rows.shape[0], width.shape[0]) >= 2


# ---- where the packages live ------------------------------------------------------------------------
def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def key_text(model_path: str, device: str) -> str:
    """The text whose SHA-256 names a model's folder (the plugin builds the same text)."""
    return "|".join([_file_digest(model_path), device, torch.__version__.split("+")[0], aoti.machine()["flags"],
                     str(PROTOCOL)])


def package_dir(model_path: str, device: str = "cpu") -> str:
    """The folder of ``model_path``'s compiled layers for ``device`` (``cpu`` or ``cuda``) on this machine."""
    key = hashlib.sha256(key_text(os.fspath(model_path), _device_type(device)).encode()).hexdigest()[:24]
    return os.path.join(aoti.cache_dir(), f"lammps-{key}")


def _device_type(device: str) -> str:
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise CompileError(f"compiled layers are built for cpu or cuda, not {device!r}")
    return kind


def read_manifest(folder: str) -> Optional[Dict[str, str]]:
    """The manifest of a complete folder (``key value`` lines), or None."""
    try:
        with open(os.path.join(folder, MANIFEST)) as handle:
            return dict(line.rstrip("\n").split(" ", 1) for line in handle if " " in line)
    except OSError:
        return None


# ---- building -----------------------------------------------------------------------------------------
def _example(potential, device: torch.device) -> Tuple[List[torch.Tensor], int]:
    """A jittered cubic grid of all the model's species, its first atoms local and the rest ghosts,
    with the edges centred on the local atoms: (positions, edge_index, species), n_local."""
    r_cut = float(potential.r_cut)
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    positions = grid * (0.45 * r_cut) + rng.normal(0.0, 0.05 * r_cut, size=grid.shape)
    n, n_local = positions.shape[0], 11
    dist = np.linalg.norm(positions[None, :, :] - positions[:, None, :], axis=-1)
    center, neighbour = np.nonzero((dist < r_cut) & ~np.eye(n, dtype=bool) & (np.arange(n) < n_local)[:, None])
    tensors = [torch.tensor(positions, dtype=torch.float64), torch.tensor(np.stack([center, neighbour])),
               torch.tensor(np.arange(n) % len(potential.species))]
    return [t.to(device) for t in tensors], n_local


def _deployed(model_path: str, kind: str):
    """``(potential, deployed)``: the model file's weights in the eager model code (the tensor
    products as the file runs them), frozen, on ``kind``: what the layers are traced from."""
    from .export import DeployedPotential
    from .load import model_from_file

    potential = model_from_file(model_path, tp_backend="fused")
    for parameter in potential.parameters():
        parameter.requires_grad_(False)
    return potential, DeployedPotential(potential).eval().to(torch.device(kind))


def _build_package(deployed: nn.Module, kind: str, fix: str, index: int, name: str, inputs: List[torch.Tensor],
                   dims: Sequence[Optional[Dict[int, str]]], path: str,
                   log: Optional[Callable[[str], None]] = None) -> List[str]:
    """Compile layer ``index``'s ``name`` (forward or backward) of ``deployed`` on ``inputs`` (moved
    to ``kind``) into the package ``path``, with the axes ``dims`` names dynamic. Returns the
    progress lines (or passes them to ``log`` as they come)."""
    module = (LayerForward if name == "forward" else LayerBackward)(deployed, index)
    named = aoti.dynamic_dims(*sorted({dim for spec in dims if spec for dim in spec.values()}))
    shapes = tuple(None if spec is None else {axis: named[dim] for axis, dim in spec.items()} for spec in dims)
    inputs = [t.to(kind) for t in inputs]
    lines: List[str] = []
    aoti.compile_package(module, inputs, inputs, shapes, path, fix, log or lines.append)
    return lines


def default_jobs() -> int:
    """Packages compiled side by side by default: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def compile_layers(model_path: str, device: str = "cpu", force: bool = False,
                   log: Callable[[str], None] = _say, jobs: Optional[int] = None) -> str:
    """Build the compiled layers of the model file ``model_path`` for ``device`` (``cpu`` or
    ``cuda``) into :func:`package_dir` and return that folder; nothing to do when it is complete
    (unless ``force``). Each package is checked against the model code on an example before the
    folder is complete. Needs a C++ compiler (g++); about half a minute per package on a small
    model, minutes on a large one. The packages (a forward and a backward per layer) are compiled
    ``jobs`` at a time in worker processes (default :func:`default_jobs`; 1: one after the other
    in this process); the result is the same."""
    model_path = os.fspath(model_path)
    kind = _device_type(device)
    if kind == "cuda" and not torch.cuda.is_available():
        raise CompileError("--device cuda: this torch sees no GPU; build on the machine (and torch) that runs LAMMPS")
    folder = package_dir(model_path, kind)
    if not force and read_manifest(folder) is not None:
        return folder
    fix = "run pair_style mlff with 'compiled no' (TorchScript)"
    potential, deployed = _deployed(model_path, kind)
    target = torch.device(kind)
    (positions, edge_index, species), n_local = _example(potential, target)
    vec = positions[edge_index[1]] - positions[edge_index[0]]
    with torch.no_grad():
        sh, radial = potential.edge_embedding(vec, edge_index, species)
        if deployed.pair_repulsion:
            pair = potential.pair_edge_energy(vec, edge_index, species).to(radial.dtype)
            radial = torch.cat([radial, pair.unsqueeze(-1)], dim=1)
    rows, slot, width = dense_layout(edge_index, n_local)
    local = species[:n_local]
    # the dynamic axis of each input: x, species, edge_index, sh, radial, rows, slot, width, local
    # (+ aggregated, grad_y for the backward)
    dims = ({0: "num_atoms"}, {0: "num_atoms"}, {1: "num_edges"}, {0: "num_edges"}, {0: "num_edges"},
            {0: "num_rows"}, {0: "num_edges"}, {0: "max_neighbours"}, {0: "num_local"})
    local_dims = ({0: "num_local"}, {0: "num_local"})
    dtype = radial.dtype
    generator = torch.Generator().manual_seed(0)
    x = potential.embed(species)[1]

    # the examples and the references, layer by layer (eager: seconds); then the packages
    packages = []  # (index, name, inputs, dims, references)
    for index in range(deployed.num_layers):
        example = [x, species, edge_index, sh, radial, rows, slot, width, local]
        y, aggregated = LayerForward(deployed, index)(*example)
        grad_y = (torch.randn(y.shape, generator=generator, dtype=torch.float64) * 0.5).to(target, y.dtype)
        # the references: the file's own layer (halo_layer) and its gradient by autograd through it
        packages.append((index, "forward", example, dims,
                         (_reference_layer(deployed, index, example), aggregated)))
        packages.append((index, "backward", example + [aggregated, grad_y], dims + local_dims,
                         _reference_grads(deployed, index, example, grad_y)))
        # the next layer's input: these local rows, the ghost rows made up (any values are an example)
        ghost = torch.randn((x.shape[0] - n_local, y.shape[1]), generator=generator, dtype=torch.float64)
        x = torch.cat([y.detach(), ghost.to(target, y.dtype)])

    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, mode=0o700)
    start = time.perf_counter()
    jobs = max(1, min(len(packages), default_jobs() if jobs is None else int(jobs)))
    side_by_side = f", {jobs} at a time" if jobs > 1 else ""
    log(f"compiling the {deployed.num_layers} layers of {os.path.basename(model_path)} for this machine's "
        f"{kind.upper()}{side_by_side} (once; cached in {folder})")
    job = {"model_path": model_path, "kind": kind, "fix": fix, "threads": torch.get_num_threads(),
           "tasks": [(index, name, [t.detach().cpu() for t in inputs], spec,
                      os.path.join(folder, f"layer{index}_{name}.pt2")) for index, name, inputs, spec, _ in packages]}
    for (index, name, inputs, _, references), _done in zip(packages, _run_tasks(job, jobs, log, deployed)):
        path = os.path.join(folder, f"layer{index}_{name}.pt2")
        runner = aoti.load_package(path, f"compiled layer {index} {name}", f"delete {folder} to build it again")
        with torch.no_grad():
            got = runner(*inputs)
        outputs = [(f"layer {index} {name} output {i}", g, w) for i, (g, w) in enumerate(zip(got, references))]
        aoti.check_outputs(outputs, dtype, f"compiled layer {index} {name}", fix)
    log(f"compiled in {time.perf_counter() - start:.0f} s; timing them against TorchScript")
    speedups = measure_speedup(model_path, CompiledLayers(folder, deployed.num_layers), kind)
    speedup = min(speedups.values())  # faster only if faster at every size timed
    said = ", ".join(f"{value:.2f}x at {atoms} atoms" for atoms, value in speedups.items())
    verdict = ("runs them" if faster(speedup) else
               f"keeps TorchScript: not {FASTER_MARGIN:.2f}x at every size (compiled yes runs them)")
    log(f"compiled layers: {said} TorchScript's speed here; pair_style mlff (compiled auto) {verdict}")
    _write_manifest(folder, {"protocol": str(PROTOCOL), "num_layers": str(deployed.num_layers), "device": kind,
                             "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__,
                             "model": os.path.abspath(model_path), "speedup": f"{speedup:.3f}",
                             "speedups": " ".join(f"{atoms}:{value:.3f}" for atoms, value in speedups.items()),
                             "margin": f"{FASTER_MARGIN:.2f}", "faster": "yes" if faster(speedup) else "no"})
    return folder


def _run_tasks(job: dict, jobs: int, log: Callable[[str], None], deployed: Optional[nn.Module] = None):
    """:func:`_build_package` of each of ``job["tasks"]`` (``index, name, inputs, dims, path``; the
    model ``job["model_path"]`` on ``job["kind"]``), yielding (None) as each is done, in order: in
    this process on ``deployed`` (``jobs`` 1: its progress lines as they come) or in ``jobs`` worker
    processes, each taking the next task not yet taken (``python -m mlff.modelfile.compile_worker``,
    which never imports the caller's script; each task's lines after ``layer k name:`` when it is
    done)."""
    tasks = job["tasks"]
    if jobs == 1:
        for task in tasks:
            log(f"layer {task[0]} {task[1]}:")
            _build_package(deployed, job["kind"], job["fix"], *task, log=log)
            yield None
        return
    import json
    import subprocess
    import sys
    import tempfile

    workdir = tempfile.mkdtemp(prefix="mlff-compile-")
    workers: List[subprocess.Popen] = []
    try:
        torch.save(job, os.path.join(workdir, "job.pt"))
        for j in range(jobs):
            with open(os.path.join(workdir, f"worker{j}.log"), "wb") as stderr:
                workers.append(subprocess.Popen([sys.executable, "-m", "mlff.modelfile.compile_worker", workdir],
                                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr))
        for i, task in enumerate(tasks):
            result_path = os.path.join(workdir, f"task{i}.json")
            while not os.path.exists(result_path):
                if all(worker.poll() is not None for worker in workers) and not os.path.exists(result_path):
                    said = []  # each worker's last words (its exception, typically), once each
                    for j, worker in enumerate(workers):
                        with open(os.path.join(workdir, f"worker{j}.log"), errors="replace") as handle:
                            lines = [line.strip() for line in handle.read().splitlines() if line.strip()]
                        last = f"{lines[-1][:500] if lines else 'nothing'} (exit {worker.returncode})"
                        said += [] if last in said else [last]
                    raise CompileError(f"no process compiled layer {task[0]} {task[1]}; the workers stopped "
                                       f"saying: {'; '.join(said)}; {job['fix']}")
                time.sleep(0.1)
            with open(result_path) as handle:
                result = json.load(handle)
            if "error" in result:
                raise CompileError(result["error"])
            log(f"layer {task[0]} {task[1]}:")
            for line in result["lines"]:
                log(line)
            yield None
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _timing_cell(species: str, r_cut: float, repeat: int):
    """A rattled fcc cell whose first shell lies at half the cutoff (about 40 neighbours per atom)."""
    from ase.build import bulk

    atoms = bulk(species, "fcc", a=np.sqrt(2.0) * 0.5 * r_cut, cubic=True).repeat((repeat,) * 3)
    atoms.rattle(0.02 * r_cut, seed=0)
    return atoms


def measure_speedup(model_path: str, layers: "CompiledLayers", device: str = "cpu",
                    repeats: Sequence[int] = ()) -> Dict[int, float]:
    """TorchScript's time over the compiled layers' for one halo-protocol evaluation (best of 4
    after a warm-up, alternating; TorchScript without its optimising executor, as the plugin runs
    it) of periodic cells of the model's first species, by number of
    atoms: 256 and 4000 on the CPU (``repeats`` 4 and 10), 4000 and 32000 on a GPU (10 and 20);
    > 1 means the compiled layers are faster."""
    from ..testing import image_halo
    from .halo import halo_evaluate, image_exchange
    from .load import load

    model = load(model_path, device=device, compiled=False)
    speedups = {}
    for repeat in repeats or ((10, 20) if device == "cuda" else (4, 10)):
        atoms = _timing_cell(model.species[0], model.r_cut, repeat)
        positions, edge_index, species, owner, n = (t.to(device) if isinstance(t, torch.Tensor) else t
                                                    for t in image_halo(atoms, model.species, model.r_cut))
        exchange = image_exchange(owner, n)
        best = {"torchscript": float("inf"), "compiled": float("inf")}
        for attempt in range(5):
            for name, compiled in (("torchscript", None), ("compiled", layers)):
                if device == "cuda":
                    torch.cuda.synchronize()
                begin = time.perf_counter()
                with torch.jit.optimized_execution(False):  # the plugin's plain executor
                    halo_evaluate(model.module, positions, edge_index, species, n, *exchange, compiled=compiled)
                if device == "cuda":
                    torch.cuda.synchronize()
                if attempt > 0:
                    best[name] = min(best[name], time.perf_counter() - begin)
        speedups[len(atoms)] = best["torchscript"] / best["compiled"]
    return speedups


def faster(speedup: float) -> bool:
    """Whether ``speedup`` (TorchScript's time over the compiled layers', the lowest over the sizes
    timed) is beyond :data:`FASTER_MARGIN`: what `compiled auto` runs them for."""
    return speedup >= FASTER_MARGIN


def _write_manifest(folder: str, entries: Dict[str, str]) -> None:
    partial = os.path.join(folder, MANIFEST + ".partial")
    with open(partial, "w") as handle:
        for key, value in entries.items():
            handle.write(f"{key} {value}\n")
    os.replace(partial, os.path.join(folder, MANIFEST))


# ---- running them from Python (the reference of the plugin's C++ path) --------------------------------
class CompiledLayers:
    """The compiled layers of one model file, loaded: ``forward(k, ...)`` and ``backward(k, ...)``
    with the signatures above. Built with :func:`compile_layers` first."""

    def __init__(self, folder: str, num_layers: Optional[int] = None):
        if num_layers is None:  # a complete folder (given: one being built, before its manifest)
            manifest = read_manifest(folder)
            if manifest is None or manifest.get("protocol") != str(PROTOCOL):
                raise CompileError(f"{folder} holds no complete compiled layers of protocol {PROTOCOL}; build them "
                                   f"with `mlff lammps compile MODEL`")
            num_layers = int(manifest["num_layers"])
        self.num_layers = int(num_layers)
        fix = f"delete {folder} and build it again"
        self._forward = [aoti.load_package(os.path.join(folder, f"layer{k}_forward.pt2"), "a compiled layer", fix)
                         for k in range(self.num_layers)]
        self._backward = [aoti.load_package(os.path.join(folder, f"layer{k}_backward.pt2"), "a compiled layer", fix)
                          for k in range(self.num_layers)]

    def forward(self, index: int, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(y, aggregated)``: the layer's output and its neighbour sums (for ``backward``)."""
        y, aggregated = self._forward[index](*[t.detach().contiguous() for t in inputs])
        return y, aggregated

    def backward(self, index: int, inputs: Sequence[torch.Tensor], aggregated: torch.Tensor, grad_y: torch.Tensor
                 ) -> Tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``(grad_x or None for layer 0, grad_sh, grad_radial)``."""
        out = self._backward[index](*[t.detach().contiguous() for t in list(inputs) + [aggregated, grad_y]])
        return (None, out[0], out[1]) if index == 0 else (out[0], out[1], out[2])
