"""Labelled frames as atomic-data dictionaries with precomputed neighbour lists, and batching."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch

from . import keys
from .atomic_data import AtomicData, SpeciesMap, collate, from_ase
from .readers import Frame


def to_atomic_data(frames: Sequence[Frame], species: Sequence[str], r_cut: float,
                   type_weights: Optional[Dict[str, float]] = None) -> List[AtomicData]:
    """One dictionary per frame (float64) with labels under the ``REF_*`` keys and its loss weight
    (:func:`frame_weight`)."""
    species_map = SpeciesMap(species)
    out = []
    for frame in frames:
        data = from_ase(frame.atoms, species_map, r_cut, frame.charge)
        data.update(label_tensors(frame, type_weights))
        out.append(data)
    return out


def frame_weight(frame: Frame, type_weights: Optional[Dict[str, float]] = None) -> float:
    """The frame's factor on its loss terms: its own weight (``config_weight`` in extxyz) times
    ``type_weights[config_type]`` (1 for a config_type not listed or a frame without one)."""
    return frame.weight * (type_weights or {}).get(frame.atoms.info.get("config_type"), 1.0)


def label_tensors(frame: Frame, type_weights: Optional[Dict[str, float]] = None) -> AtomicData:
    """A frame's labels under the ``REF_*`` keys (NaN or zeros where missing, ``HAS_*`` flags) and
    its loss weight (:func:`frame_weight`)."""
    n = len(frame.atoms)
    forces = frame.forces if frame.forces is not None else np.full((n, 3), np.nan)
    has_stress, has_dipole = frame.stress is not None, frame.dipole is not None
    stress = frame.stress if has_stress else np.zeros((3, 3))
    dipole = frame.dipole if has_dipole else np.zeros(3)
    return {
        keys.REF_ENERGY_KEY: torch.tensor([np.nan if frame.energy is None else frame.energy], dtype=torch.float64),
        keys.REF_FORCES_KEY: torch.as_tensor(np.array(forces, dtype=np.float64)),
        keys.REF_STRESS_KEY: torch.as_tensor(np.array(stress, dtype=np.float64)).reshape(1, 3, 3),
        keys.HAS_STRESS_KEY: torch.tensor([1.0 if has_stress else 0.0], dtype=torch.float64),
        keys.REF_DIPOLE_KEY: torch.as_tensor(np.array(dipole, dtype=np.float64)).reshape(1, 3),
        keys.HAS_DIPOLE_KEY: torch.tensor([1.0 if has_dipole else 0.0], dtype=torch.float64),
        keys.LOSS_WEIGHT_KEY: torch.tensor([frame_weight(frame, type_weights)], dtype=torch.float64),
    }


class LazyAtomicData(Sequence):
    """:func:`to_atomic_data` of each frame when it is indexed (``preload: false``): memory holds the
    frames (or, for a :class:`~mlff.data.store.StoreFrames`, only their row ids), not their
    neighbour lists. Slices are lists."""

    def __init__(self, frames: Sequence[Frame], species: Sequence[str], r_cut: float,
                 type_weights: Optional[Dict[str, float]] = None):
        self.frames, self.species, self.r_cut = frames, list(species), float(r_cut)
        self.type_weights = dict(type_weights or {})

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return to_atomic_data([self.frames[int(index)]], self.species, self.r_cut, self.type_weights)[0]

    def label_counts(self) -> dict:
        """:func:`~mlff.train.loss.batch_counts` of all the frames, without their neighbour lists
        (from a converted dataset's frame table, else one pass over their labels)."""
        from .frame_table import table_of

        table = table_of(self.frames)
        if table is not None:
            return {"graphs": float(len(table)), "force_components": float(table.force_values.sum()),
                    "stress_components": 9.0 * float(table.has_stress.sum()),
                    "dipole_components": 3.0 * float(table.has_dipole.sum())}
        counts = dict.fromkeys(("graphs", "force_components", "stress_components", "dipole_components"), 0.0)
        for frame in self.frames:
            counts["graphs"] += 1.0
            if frame.forces is not None:
                counts["force_components"] += float(np.isfinite(frame.forces).sum())
            counts["stress_components"] += 9.0 * (frame.stress is not None)
            counts["dipole_components"] += 3.0 * (frame.dipole is not None)
        return counts

    def labels(self, index: int) -> AtomicData:
        """Only what :func:`~mlff.train.loss.batch_counts` reads (which labels a frame has), without
        its neighbour list: a rank's view of the structures other ranks train on."""
        return label_tensors(self.frames[int(index)], self.type_weights)


class BatchItems:
    """Batch ``k`` of ``batches`` as the list of its items from ``data``: the structures of this
    rank (positions ``rank::world``, as the trainer splits a batch) in full; with several ranks and
    a :class:`LazyAtomicData`, the others' labels only. Picklable (DataLoader workers)."""

    def __init__(self, data: Sequence[AtomicData], batches: Sequence[np.ndarray], rank: int = 0, world: int = 1):
        self.data, self.batches, self.rank, self.world = data, batches, rank, world

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> List[AtomicData]:
        lazy = isinstance(self.data, LazyAtomicData) and self.world > 1
        return [self.data[i] if not lazy or j % self.world == self.rank else self.data.labels(i)
                for j, i in enumerate(self.batches[k])]


class _Packed(BatchItems):
    """A batch's items as one pickled blob of numpy arrays: a DataLoader worker then hands over one
    buffer per batch, where tensors would each take a shared-memory segment (about 30 per
    structure), or a ``torch.save`` each if pickled."""

    def __getitem__(self, k: int) -> bytes:
        import pickle

        items = [{key: value.numpy() for key, value in item.items()} for item in super().__getitem__(k)]
        return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(blob: bytes) -> List[AtomicData]:
    import pickle

    return [{key: torch.from_numpy(value) for key, value in item.items()} for item in pickle.loads(blob)]


def _as_is(items):
    return items


class Prefetcher:
    """The items of ``batches[k]`` from ``data`` (:class:`BatchItems`), built ahead of the step
    that trains them: with ``workers = 0`` batch ``k + 1`` in a background thread while batch ``k``
    trains (the neighbour search releases the GIL); with ``workers > 0`` by that many DataLoader
    worker processes (reading frames and building graphs off the training process), ``2 * workers``
    batches ahead. The same items, in the same order, as indexing ``data`` directly: a resumed epoch
    draws the same batches. Each DDP rank builds the graphs of its own part of the batch only."""

    def __init__(self, data: Sequence[AtomicData], batches: Sequence[np.ndarray], rank: int = 0, world: int = 1,
                 workers: int = 0):
        self.workers = int(workers)
        self.items = (_Packed if self.workers > 0 else BatchItems)(data, batches, rank, world)
        self.pool, self.pending = None, {}
        self.loader, self.next = None, -1
        if self.workers == 0:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlff-prefetch")

    def take(self, k: int) -> List[AtomicData]:
        if self.workers > 0:
            return self._from_workers(k)
        future = self.pending.pop(k, None)
        items = future.result() if future is not None else self.items[k]
        self.pending = {}  # a skipped batch (resume) is never waited for
        if k + 1 < len(self.items):
            self.pending[k + 1] = self.pool.submit(self.items.__getitem__, k + 1)
        return items

    def _from_workers(self, k: int) -> List[AtomicData]:
        from torch.utils.data import DataLoader

        if self.loader is None or k != self.next:  # the first batch drawn, or a jump (resume)
            self.close()
            self.loader = iter(DataLoader(self.items, batch_size=None, sampler=range(k, len(self.items)),
                                          num_workers=self.workers, collate_fn=_as_is, prefetch_factor=2))
        self.next = k + 1
        return _unpack(next(self.loader))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.loader = None  # its workers stop


def split_indices(n: int, valid_fraction: float, seed: int,
                  elements=None) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split into (train, valid) indices; at least one frame in each. With each
    frame's ``elements`` (a set of symbols per frame, or a ``(frames, elements)`` boolean matrix),
    every element keeps a training frame: a validation frame with an element the training frames
    lack moves to training (a model cannot learn an element from validation)."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 frames to split off a validation set, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_valid = min(max(1, int(round(valid_fraction * n))), n - 1)
    train, valid = order[n_valid:], order[:n_valid]
    if elements is not None:
        present = elements.astype(bool) if isinstance(elements, np.ndarray) else element_presence(elements)[1]
        known = present[train].any(axis=0)
        moved: List[int] = []
        for index in valid[(present[valid] & ~known).any(axis=1)]:  # candidates, in order
            if (present[index] & ~known).any() and len(valid) - len(moved) > 1:
                moved.append(int(index))
                known |= present[index]
        if moved:
            train, valid = np.concatenate([train, moved]), valid[~np.isin(valid, moved)]
    return np.sort(train.astype(np.int64)), np.sort(valid.astype(np.int64))


def element_presence(elements: Sequence[set]) -> tuple[List[str], np.ndarray]:
    """The elements (sorted) of a set of symbols per frame, and which each frame holds:
    ``(frames, elements)`` booleans."""
    symbols = sorted(set().union(*elements)) if len(elements) else []
    column = {s: k for k, s in enumerate(symbols)}
    present = np.zeros((len(elements), len(symbols)), dtype=bool)
    for row, frame_elements in enumerate(elements):
        present[row, [column[s] for s in frame_elements]] = True
    return symbols, present


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                  sizes: Optional[Sequence[int]] = None, batch_atoms: int = 0) -> List[np.ndarray]:
    """The batches of one epoch: a permutation that depends only on (seed, epoch), so a resumed run
    sees exactly the batches an uninterrupted run would.

    With ``batch_atoms > 0`` (and the structures' atom counts ``sizes``) batches are cut by size
    instead of count: consecutive structures of the permutation join a batch while its atoms stay
    within ``batch_atoms`` (a larger structure is a batch of its own), so that 1-atom and
    500-atom structures cost about the same per batch."""
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    if batch_atoms <= 0:
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if sizes is None or len(sizes) != n:
        raise ValueError("epoch_batches: batch_atoms needs the atom count of every structure")
    batches, current, atoms = [], [], 0
    for index in order:
        size = int(sizes[index])
        if current and atoms + size > batch_atoms:
            batches.append(np.array(current))
            current, atoms = [], 0
        current.append(index)
        atoms += size
    if current:
        batches.append(np.array(current))
    return batches


def iterate_batches(data: Sequence[AtomicData], batches: Sequence[np.ndarray]) -> Iterator[AtomicData]:
    for batch in batches:
        yield collate([data[i] for i in batch])
