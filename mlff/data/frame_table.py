"""A dataset's frames summarised as columns: what training reads before its first step (the splits'
element sets, the checks, the statistics, batch sizes, split fingerprints) for every frame, without
its structure. ``mlff data convert`` computes it in the worker processes that read the files and
stores it in the dataset (:mod:`mlff.data.store`), so that a run on a million converted frames
starts without reading them: each function here gives what the pass over the frames it replaces
gives (:func:`describe`, the energy shifts, force scale and average neighbour count of
:mod:`mlff.data.stats`).

Neighbour counts are kept for the cutoffs of :data:`NEIGHBOR_CUTOFFS` (2-8 Å in steps of 0.25 Å);
a model with another cutoff counts its neighbours in a pass over the frames."""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from typing import List, Optional, Sequence

import numpy as np

from .fingerprint import fingerprint
from .neighbors import neighbor_list
from .readers import Frame

NEIGHBOR_CUTOFFS = np.round(np.arange(2.0, 8.0 + 1e-9, 0.25), 2)  # Å
TABLE_VERSION = 1


@dataclass
class FrameTable:
    symbols: List[str]  # the elements, in the order of ``counts``' columns
    counts: np.ndarray  # (frames, elements) int32: atoms of each element
    energy: np.ndarray  # (frames,) float64, eV; NaN without an energy label
    force_values: np.ndarray  # (frames,) int32: force components (0 without a forces label)
    force_squares: np.ndarray  # (frames,) float64: sum of the squared components, (eV/Å)^2
    force_max: np.ndarray  # (frames,) float64: the largest |component|, eV/Å (0 without forces)
    has_stress: np.ndarray  # (frames,) bool
    has_dipole: np.ndarray  # (frames,) bool
    closest: np.ndarray  # (frames,) float64: the shortest distance between atoms or periodic images, Å; inf beyond 8 Å
    edges: np.ndarray  # (frames, len(NEIGHBOR_CUTOFFS)) int32: directed edges within each cutoff
    fingerprints: np.ndarray  # (frames,) uint64: :func:`mlff.data.fingerprint.fingerprint`
    # (frames, pairs) float64: the shortest distance between two atoms of each element pair of
    # ``symbols`` (in the order of :func:`pair_names`), Å; inf beyond 8 Å, NaN in tables stored
    # before the column existed
    pair_closest: np.ndarray

    @classmethod
    def from_frames(cls, frames: Sequence[Frame]) -> "FrameTable":
        """The table of ``frames`` (one neighbour search per frame, at the largest cutoff)."""
        symbols = sorted({s for f in frames for s in f.atoms.get_chemical_symbols()})
        column = {s: k for k, s in enumerate(symbols)}
        n = len(frames)
        table = cls(symbols, np.zeros((n, len(symbols)), dtype=np.int32), np.full(n, np.nan),
                    np.zeros(n, dtype=np.int32), np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool),
                    np.zeros(n, dtype=bool), np.full(n, np.inf),
                    np.zeros((n, len(NEIGHBOR_CUTOFFS)), dtype=np.int32), np.zeros(n, dtype=np.uint64),
                    np.full((n, len(pair_names(symbols))), np.inf))
        pair_column = {name: k for k, name in enumerate(pair_names(symbols))}
        for k, frame in enumerate(frames):
            atoms = frame.atoms
            for symbol in atoms.get_chemical_symbols():
                table.counts[k, column[symbol]] += 1
            if frame.energy is not None:
                table.energy[k] = frame.energy
            if frame.forces is not None and frame.forces.size:
                table.force_values[k] = frame.forces.size
                table.force_squares[k] = float(np.sum(np.square(frame.forces)))
                table.force_max[k] = float(np.abs(frame.forces).max())
            table.has_stress[k] = frame.stress is not None
            table.has_dipole[k] = frame.dipole is not None
            edge_index, _, lengths = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc,
                                                   float(NEIGHBOR_CUTOFFS[-1]), with_lengths=True)
            if len(lengths):
                table.closest[k] = float(lengths.min())
                table.edges[k] = np.searchsorted(np.sort(lengths), NEIGHBOR_CUTOFFS, side="left")
                for name, distance in pair_minima(atoms.get_chemical_symbols(), edge_index, lengths).items():
                    table.pair_closest[k, pair_column[name]] = distance
            table.fingerprints[k] = np.uint64(int(fingerprint(atoms), 16))
        return table

    def __len__(self) -> int:
        return len(self.energy)

    @property
    def atoms(self) -> np.ndarray:
        """Atoms per frame (int64)."""
        return self.counts.sum(axis=1, dtype=np.int64)

    def take(self, indices) -> "FrameTable":
        indices = np.asarray(indices, dtype=np.int64)
        return FrameTable(self.symbols, **{f.name: getattr(self, f.name)[indices] for f in fields(self)
                                           if f.name != "symbols"})

    @classmethod
    def concatenate(cls, tables: Sequence["FrameTable"]) -> "FrameTable":
        """The tables' frames one after the other (element columns merged)."""
        symbols = sorted({s for t in tables for s in t.symbols})
        counts = []
        for t in tables:
            full = np.zeros((len(t), len(symbols)), dtype=np.int32)
            full[:, [symbols.index(s) for s in t.symbols]] = t.counts
            counts.append(full)
        names = pair_names(symbols)
        pairs = []
        for t in tables:
            full = np.full((len(t), len(names)), np.inf)
            full[:, [names.index(p) for p in pair_names(t.symbols)]] = t.pair_closest
            pairs.append(full)
        columns = {f.name: np.concatenate([getattr(t, f.name) for t in tables])
                   for f in fields(cls) if f.name not in ("symbols", "counts", "pair_closest")}
        return cls(symbols, np.concatenate(counts) if counts else np.zeros((0, 0), dtype=np.int32), **columns,
                   pair_closest=np.concatenate(pairs) if pairs else np.zeros((0, 0)))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, version=TABLE_VERSION, symbols=np.array(self.symbols, dtype=str),
                 cutoffs=NEIGHBOR_CUTOFFS, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "symbols"})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Optional["FrameTable"]:
        """The stored table, or None for one this mlff does not read (another version or cutoff grid:
        the statistics then come from a pass over the frames)."""
        with np.load(io.BytesIO(data)) as arrays:
            # tables stored before the pair column: it is unknown (NaN), the rest is read
            optional = {"pair_closest"}
            if (int(arrays["version"]) != TABLE_VERSION or not np.array_equal(arrays["cutoffs"], NEIGHBOR_CUTOFFS)
                    or any(f.name not in arrays.files for f in fields(cls) if f.name not in optional)):
                return None
            symbols = [str(s) for s in arrays["symbols"]]
            columns = {f.name: arrays[f.name] for f in fields(cls) if f.name != "symbols" and f.name in arrays.files}
            if "pair_closest" not in columns:
                columns["pair_closest"] = np.full((len(columns["energy"]), len(pair_names(symbols))), np.nan)
            return cls(symbols, **columns)


def pair_names(symbols: Sequence[str]) -> List[str]:
    """The element pairs of ``symbols`` (sorted), each once, as :func:`mlff.data.pairs.pair_key`
    names them: the columns of :attr:`FrameTable.pair_closest`."""
    return [f"{a}-{b}" for k, a in enumerate(symbols) for b in symbols[k:]]


def pair_minima(symbols: Sequence[str], edge_index: np.ndarray, lengths: np.ndarray) -> dict:
    """The shortest edge of each element pair, ``{"C-H": 0.99, ...}``, of a structure's neighbour
    list (``edge_index`` (2, E), ``lengths`` (E,)); pairs without an edge are left out."""
    names, index = np.unique(np.asarray(symbols), return_inverse=True)
    if not len(lengths):
        return {}
    n = len(names)
    low, high = np.minimum(index[edge_index[0]], index[edge_index[1]]), np.maximum(index[edge_index[0]], index[edge_index[1]])
    shortest = np.full(n * n, np.inf)
    np.minimum.at(shortest, low * n + high, lengths)
    return {f"{names[c // n]}-{names[c % n]}": float(shortest[c]) for c in np.flatnonzero(np.isfinite(shortest))}


def closest_pairs(table: FrameTable, cutoff: float) -> Optional[dict]:
    """:func:`mlff.data.stats.closest_pairs` from the table, or None where the table predates the
    pair column."""
    if np.isnan(table.pair_closest).any() or cutoff > NEIGHBOR_CUTOFFS[-1]:
        return None
    shortest = table.pair_closest.min(axis=0) if len(table) else np.full(table.pair_closest.shape[1], np.inf)
    return {name: float(d) for name, d in zip(pair_names(table.symbols), shortest) if d < cutoff}


def table_of(frames) -> Optional[FrameTable]:
    """The stored table of a converted dataset's frames (a :class:`~mlff.data.store.StoreFrames`),
    else None: the caller then passes over the frames."""
    method = getattr(frames, "frame_table", None)
    return method() if method is not None else None


def element_counts(table: FrameTable, species: Sequence[str]) -> np.ndarray:
    """(frames, species) float64 atom counts (:func:`mlff.data.stats.species_counts`)."""
    counts = np.zeros((len(table), len(species)))
    for k, symbol in enumerate(species):
        if symbol in table.symbols:
            counts[:, k] = table.counts[:, table.symbols.index(symbol)]
    return counts


def describe(table: FrameTable) -> dict:
    """:func:`mlff.data.readers.describe` of the table's frames."""
    atoms = table.atoms
    labelled = ~np.isnan(table.energy)
    values = int(table.force_values.sum())
    totals = table.counts.sum(axis=0)
    return {
        "frames": len(table),
        "atoms": int(atoms.sum()),
        "atoms_per_frame": [int(atoms.min()), int(atoms.max())] if len(table) else None,
        "elements": {s: int(c) for s, c in zip(table.symbols, totals) if c},
        "frames_with_stress": int(table.has_stress.sum()),
        "energy_per_atom_eV": ([float((table.energy[labelled] / atoms[labelled]).min()),
                                float((table.energy[labelled] / atoms[labelled]).max())] if labelled.any() else None),
        "max_abs_force_eV_per_A": float(table.force_max.max()) if values else None,
        "rms_force_eV_per_A": float(np.sqrt(table.force_squares.sum() / values)) if values else None,
    }


def first_problem(table: FrameTable, species: Optional[Sequence[str]], need_energy: bool, need_forces: bool,
                  min_distance: float) -> Optional[int]:
    """The first frame :func:`mlff.data.validate.validate_frames` would stop at for a reason the
    table shows (a missing label, an element outside ``species``, atoms closer than
    ``min_distance``), or None. The other checks (NaN, shapes) ran when the dataset was converted."""
    bad = np.zeros(len(table), dtype=bool)
    if need_energy:
        bad |= np.isnan(table.energy)
    if need_forces:
        bad |= table.force_values == 0
    if species is not None:
        outside = [k for k, s in enumerate(table.symbols) if s not in set(species)]
        bad |= table.counts[:, outside].sum(axis=1) > 0
    bad |= table.closest < min_distance
    hits = np.flatnonzero(bad)
    return int(hits[0]) if len(hits) else None


def average_num_neighbors(table: FrameTable, r_cut: float) -> Optional[float]:
    """:func:`mlff.data.stats.average_num_neighbors` for a cutoff on the grid, else None."""
    match = np.flatnonzero(np.isclose(NEIGHBOR_CUTOFFS, r_cut, rtol=0, atol=1e-9))
    if not len(match):
        return None
    return max(float(table.edges[:, match[0]].sum()) / max(int(table.atoms.sum()), 1), 1.0)
