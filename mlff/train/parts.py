"""Batches that do not fit in the device's memory run in parts.

A training step's loss is normalised by counts of the whole batch (:func:`~mlff.train.loss.batch_counts`),
so it is a sum over structures: the gradients of a batch's parts, accumulated, are the batch's
gradients (to rounding), as data-parallel ranks already rely on. Validation's loss and metric sums
add up the same way. :class:`MemoryParts` runs a batch in one part; where that runs out of memory,
in 2, 4, ... parts (at most one structure each), and later batches start from the number that fitted.
A single structure that does not fit is a :class:`MemoryError` that says so.
"""

from __future__ import annotations

from typing import Callable, List, Sequence, TypeVar

import torch

from ..data import keys
from ..modelfile.memory import AllocationFailures, allocator_message, is_out_of_memory, release_cached

T = TypeVar("T")


def split(items: Sequence, parts: int) -> List[Sequence]:
    """``items`` in ``parts`` consecutive groups of sizes differing by at most one (none empty)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    groups, start = [], 0
    for k in range(parts):
        end = start + size + (k < extra)
        groups.append(items[start:end])
        start = end
    return groups


def _atoms(items: Sequence[dict]) -> int:
    return sum(int(item[keys.POSITIONS_KEY].shape[0]) for item in items)


class MemoryParts:
    """How many parts the batches of one kind of work (``what``: "training", "validating") run in."""

    def __init__(self, what: str, device: torch.device, log: Callable[[str], None]):
        self.what = what
        self.device = torch.device(device)
        self.log = log
        self.parts = 1
        self.failures = AllocationFailures(self.device)

    def run(self, items: Sequence[dict], work: Callable[[Sequence[dict]], T], undo: Callable[[], None]) -> List[T]:
        """``work`` on each part of ``items``; where a part runs out of memory, ``undo`` (e.g. drop the
        gradients accumulated so far) and all of it again in twice as many parts."""
        while True:
            self.failures.ready()
            try:
                return [work(group) for group in split(items, self.parts)]
            except Exception as error:
                if not is_out_of_memory(error, self.failures):
                    raise
                failure = error
            undo()
            release_cached(self.device)
            largest = max((_atoms([item]) for item in items), default=0)
            if self.parts >= len(items):
                raise MemoryError(
                    f"out of {self.device} memory {self.what} one structure at a time ({allocator_message(failure)}): "
                    f"the largest structure of the batch has {largest} atoms; train on a device with more memory, "
                    "with a smaller model (num_features, l_max, r_cut), or without the largest structures"
                ) from failure
            self.parts = min(len(items), 2 * self.parts)
            self.log(f"out of {self.device} memory {self.what} {len(items)} structures ({_atoms(items)} atoms) at "
                     f"once: from now on each batch runs in {self.parts} parts, one after the other (the same "
                     "numbers to rounding, each step slower)")
