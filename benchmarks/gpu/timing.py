"""What the device check times, shared by mlff's rows and the peers' (``peers.py`` runs in a
peer's environment, so this module needs only torch, numpy and ASE).

- ``host_threads(device)``: the torch threads every timing process uses;
- ``fcc_cu(n)``: a rattled fcc Cu supercell of about ``n`` atoms (the same structures for everyone);
- ``time_calculator(calc, device, atoms, max_call, measure_s)``: ms per energy+forces call of an ASE
  calculator on a new structure each call (one atom moved by 1e-6 Å, so nothing is cached), after
  one warm-up call, averaged over about ``measure_s`` seconds of calls (2-10 calls), and the peak
  GPU memory of the calls.
"""

import os
import time


def host_threads(device: str) -> int:
    """Up to 8 torch threads; in CPU mode ``OMP_NUM_THREADS`` where it is set (the tests run the CPU
    mode beside other work on two cores: two threads each made its steps 3x slower)."""
    if device == "cpu" and os.environ.get("OMP_NUM_THREADS"):
        return int(os.environ["OMP_NUM_THREADS"])
    return min(8, os.cpu_count() or 1)


def fcc_cu(atoms_wanted: int):
    import numpy as np
    from ase.build import bulk

    cells = max(1, atoms_wanted // 4)
    side = round(cells ** (1 / 3))
    reps = (side, side, max(1, round(cells / side**2)))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(reps)
    atoms.rattle(0.05, seed=int(np.prod(reps)))
    return atoms, reps


def time_calculator(calc, device: str, atoms, max_call: float, measure_s: float = 3.0) -> dict:
    import torch

    atoms = atoms.copy()
    atoms.calc = calc

    def one_call():
        atoms.positions[0, 0] += 1e-6
        atoms.get_potential_energy()
        atoms.get_forces()

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    one_call()  # warm-up (TorchScript profiling runs, allocator growth, compiled kernels' first use)
    first = time.perf_counter() - start
    if first > max_call:
        return {"ms": round(1e3 * first, 1), "note": "one call only (slow)"}
    one_call()
    repeats = max(2, min(10, int(measure_s / max(first, 1e-3))))
    start = time.perf_counter()
    for _ in range(repeats):
        one_call()
    seconds = (time.perf_counter() - start) / repeats
    row = {"ms": round(1e3 * seconds, 2), "atom_steps_per_s": round(len(atoms) / seconds)}
    if device == "cuda":
        row["peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return row


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or "out of memory" in str(error).lower()
