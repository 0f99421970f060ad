"""What a model call does when the device runs out of memory.

A whole-layer call keeps every layer's per-edge tensors for the force backward (0.64 MB per atom
for a 2 x 64 l_max 2 model in float32, docs/performance.md); the file's ``forward_chunked`` keeps
one chunk of atoms' graph at a time (0.05 MB per atom), to rounding the same numbers, at 1.2-1.6x
the time. ``chunk_atoms="auto"`` (the default of :class:`~mlff.calculators.MLFFCalculator`) runs
whole layers and, when they do not fit, the same call again in chunks, halving the chunk until it
fits; later calls start from the chunk that fitted. An explicit ``chunk_atoms`` (0: whole layers,
N: chunks of N) that does not fit is a :class:`MemoryError` that names the setting to change.

Out of memory is recognised by its type (``torch.OutOfMemoryError``, ``MemoryError``) or, where
TorchScript's interpreter re-raises it as a ``RuntimeError``, by the allocators' messages (CUDA's
"out of memory", the CPU allocator's "can't allocate memory").
"""

from __future__ import annotations

import re
from typing import Optional, Union

import torch

AUTO = "auto"
# the smallest chunk tried: below it, the per-atom data every chunk shares dominates the peak
MIN_CHUNK_ATOMS = 64
# what the allocators say: torch's (CUDA, CPU), and C++'s own (a std::vector inside an operator), as
# the LAMMPS plugin also reads them (pair_mlff_model.cpp)
_MARKERS = ("out of memory", "can't allocate memory", "not enough memory", "std::bad_alloc")
_OOM_TYPES = (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))


def check_chunk_atoms(value) -> Union[int, str]:
    """``value`` as a chunk_atoms setting: ``"auto"``, 0 (whole layers) or a positive number of atoms."""
    if value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"chunk_atoms is 'auto' or a number of atoms (0: whole layers), got {value!r}")
    return value


def is_out_of_memory(error: BaseException, failures: Optional["AllocationFailures"] = None) -> bool:
    """Whether ``error`` says that an allocation failed (on any device), or (with ``failures``, the
    device's count) an allocation failed since the count was last read."""
    grew = failures.grew() if failures is not None else False  # read after every error: it stays current
    if grew or isinstance(error, _OOM_TYPES):
        return True
    return isinstance(error, RuntimeError) and any(marker in str(error) for marker in _MARKERS)


def failed_allocations(device: torch.device) -> int:
    """How many allocations on ``device`` have failed so far (CUDA counts them; 0 elsewhere). A
    count that grew during a call marks its error as out of memory even where the error's text
    does not say so (an AOTInductor package reports only that its run failed)."""
    if device.type != "cuda" or not torch.cuda.is_initialized():
        return 0
    return int(torch.cuda.memory_stats(device).get("num_ooms", 0))


class AllocationFailures:
    """:func:`failed_allocations` of one device, read before the first call and then only after an
    error: CUDA reports it among all of its allocator's statistics, too much to read every call."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.seen: Optional[int] = None

    def ready(self) -> None:
        """Before a call: the count to compare with, read once."""
        if self.seen is None:
            self.seen = failed_allocations(self.device)

    def grew(self) -> bool:
        """After an error: whether allocations failed since the count was last read."""
        now = failed_allocations(self.device)
        grew = self.seen is not None and now > self.seen
        self.seen = now
        return grew


def allocator_message(error: BaseException) -> str:
    """The allocator's own line of ``error`` (TorchScript puts a traceback before it)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = next((line for line in lines if any(marker in line for marker in _MARKERS)),
                lines[-1] if lines else type(error).__name__)
    line = re.sub(r"^[\w.]*Error: ", "", line)                  # TorchScript's "RuntimeError: "
    line = re.sub(r"^\[enforce fail at [^\]]*\]( err == 0\.)? ", "", line)  # c10's check
    return line[:300]


def first_chunk(num_atoms: int) -> int:
    """The first chunk tried after whole layers did not fit: the largest power of two below
    ``num_atoms`` (at least :data:`MIN_CHUNK_ATOMS`)."""
    chunk = MIN_CHUNK_ATOMS
    while chunk * 2 < num_atoms:
        chunk *= 2
    return chunk


class ChunkPolicy:
    """The chunk size ``chunk_atoms="auto"`` has settled on for one loaded model (None: whole
    layers have fitted so far). Calls with more atoms than it start in chunks of it."""

    def __init__(self):
        self.chunk: Optional[int] = None

    def start(self, num_atoms: int) -> int:
        """The chunk to try first for ``num_atoms`` atoms (0: whole layers)."""
        return self.chunk if self.chunk is not None and num_atoms > self.chunk else 0

    def next_after(self, failed: int, num_atoms: int) -> Optional[int]:
        """The chunk to try after ``failed`` (0: whole layers) ran out of memory; None when even
        the smallest did."""
        if failed == 0:
            return first_chunk(num_atoms)
        if failed <= MIN_CHUNK_ATOMS:
            return None
        return max(MIN_CHUNK_ATOMS, failed // 2)

    def settle(self, chunk: int) -> None:
        if chunk > 0:
            self.chunk = chunk if self.chunk is None else min(self.chunk, chunk)


def release_cached(device: torch.device) -> None:
    """Hand a failed attempt's cached blocks back before the next (CUDA keeps them otherwise)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
