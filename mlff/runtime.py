"""Process-level settings that make model evaluation fast on CPUs.

``tune_allocator()``: each energy + forces call allocates and frees the same few hundred MB of
per-edge tensors. glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` with fresh
``mmap`` pages and returns them on ``free``, so every call pays one page fault per 4 KiB on first
touch: a large multiply into a fresh buffer takes several times as long as into a reused one,
and a float64 model of a thousand atoms can spend most of its time faulting (figures in
docs/benchmarks/2026-11_performance.md). Keeping freed memory in the heap (``M_MMAP_MAX = 0``, and
``M_TRIM_THRESHOLD = -1``: no trimming, since a large system frees gigabytes at the end of each
call and a finite threshold would hand them back only to fault them in again) lets the next call
reuse the same pages. The cost: the process keeps its
peak heap instead of returning it to the system, which for MD (the same work every step) is the
peak it reaches anyway.

Called by :func:`mlff.load` and the trainer; the LAMMPS plugin does the same in C++. Set
``MLFF_TUNE_MALLOC=0`` to leave the allocator alone; glibc's own ``MALLOC_MMAP_MAX_`` /
``MALLOC_TRIM_THRESHOLD_`` environment variables, when set, take precedence.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NO_TRIM = -1  # M_TRIM_THRESHOLD = -1: never give the heap's free top back (see above)

_tuned = None


def tune_allocator() -> bool:
    """Keep freed large blocks in glibc's heap for reuse (see the module docstring).

    Returns True when the allocator is tuned (now or by an earlier call), False where it is not
    applicable (not Linux/glibc), disabled by ``MLFF_TUNE_MALLOC=0``, or left to the user's
    ``MALLOC_*`` environment variables.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("MLFF_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if any(name in os.environ for name in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_",
                                           "MALLOC_MMAP_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NO_TRIM))
    return _tuned
